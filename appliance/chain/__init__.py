"""The chain as the manager sees it (`interface.Chain`), and the embedded devnet behind it.

The manager reaches the chain only through `Chain`, as it would reach a Lotus/Venus node; the
devnet keeps its own SQLite database and enforces the miner actor's sealing rules."""
