"""What the devnet does with a proof its builtin verifier cannot judge: a Groth16 SNARK from an
external processor (proofs/external_snark.py). It says so and refuses it, unless the manager's
`[Chain] TrustExternalProofs = true`; then it accepts it unverified and logs each one."""

from __future__ import annotations

import logging

from ..proofs import ProofError
from ..proofs.external_snark import claims_groth16, describe, proof_form
from .policy import ChainPolicy

log = logging.getLogger("damocles.chain")


def refusal(policy: ChainPolicy, kind: str, proof: bytes, what: str, partitions: int | None = None) -> str | None:
    """Why the devnet refuses `proof` (None: not a Groth16 proof, for the builtin verifier, or
    one it trusts). ProofError for a Groth16 proof of the wrong partition count."""
    if not claims_groth16(kind, proof):
        return None
    proof_form(kind, proof, partitions)
    if policy.trust_external_proofs:
        return None
    return (f"{what}: {describe(kind, proof)} from an external processor: this devnet cannot verify Groth16 "
            f"proofs and refuses them (set TrustExternalProofs = true in the manager's [Chain] to accept them unverified)")


def accept_unverified(policy: ChainPolicy, kind: str, proof: bytes, what: str, partitions: int | None = None) -> bool:
    """True: a Groth16 proof the devnet trusts (the caller skips the builtin verifier; this is
    logged). False: any other proof, for the builtin verifier. ProofError: refused, saying why."""
    why = refusal(policy, kind, proof, what, partitions)
    if why is not None:
        raise ProofError(why)
    if not claims_groth16(kind, proof):
        return False
    log.warning("devnet: %s: %s accepted UNVERIFIED (TrustExternalProofs)", what, describe(kind, proof))
    return True


def precheck(chain, kind: str, proof: bytes, what: str, partitions: int | None = None) -> tuple[bool, str | None]:
    """The manager's check before it pays for a message, for a proof it cannot verify:
    (False, None) for any proof but a Groth16 one (the manager verifies it as before);
    (True, note) for a Groth16 proof the chain will judge, `note` saying so for the sector's
    record; ProofError with the chain's reason when the chain refuses it (the devnet, unless
    TrustExternalProofs)."""
    if not claims_groth16(kind, proof):
        return False, None
    why = chain.external_proof_refusal(kind, proof, what, partitions)
    if why is not None:
        raise ProofError(why)
    trusted = getattr(getattr(chain, "policy", None), "trust_external_proofs", False)
    note = (f"{describe(kind, proof)} from an external processor, not verified by the manager: "
            + ("the devnet accepts it unverified (TrustExternalProofs)" if trusted else "the chain verifies it"))
    log.info("%s: %s", what, note)
    return True, note
