"""damocles: a Filecoin sealing cluster in one executable (manager, worker, PoSt prover)."""

__version__ = "0.1.0"
