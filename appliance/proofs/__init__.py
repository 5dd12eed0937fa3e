"""The builtin proof engine: Filecoin-exact sealing and proving up to the SNARK.

Everything here reproduces rust-fil-proofs bit for bit (CommD, labels, trees, CommR, vanilla
proofs). The one deliberate difference is C2: see `c2.py`, the builtin stand-in for the SNARK is
the vanilla proof itself, compressed and version-tagged. It is complete and checkable, but it is
NOT succinct and a real chain would not accept it."""


class ProofError(Exception):
    """Bad input to the engine or a proof that does not verify; the message names what is wrong."""
