"""ProveReplicaUpdates3 (SnapDeals, builtin-actors' miner actor, simplified): a CC sector that is
live, not faulty, and in a deadline that is not about to be proven gets deals and a new sealed
CID, proven by the update proof. The deals are those its piece manifests notify the market actor
(f05) of. The old sealed CID is kept as the sector key (rebuilds start from it). Updates are
all-or-nothing per message, as the rest of the devnet's batches.

Simplification: one message carries any number of updates but each must verify; there is no
partial success mode (RequireActivationSuccess is not read) and no update-proof aggregation."""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, replace

from ..core.proof_types import seal_proof
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment, commd_to_cid
from ..proofs.snap import update_proof, update_proof_for_seal
from ..proofs.snap_proof import verify_update_proof
from . import deadlines as dl
from . import market
from .external_proofs import accept_unverified
from .miner_actor import _arg, deals_of_pieces, read_params
from .types import ActorError, ExitCode


def prove_replica_updates3(state, miner: int, params: dict) -> None:
    p = read_params("ProveReplicaUpdates3", params)
    updates, proofs = p["SectorUpdates"], p["SectorProofs"]
    _arg(bool(updates), "ProveReplicaUpdates3: no sector updates")
    _arg(not p["AggregateProof"] and p["AggregateProofType"] is None,
         "ProveReplicaUpdates3: update proof aggregation is not supported by the devnet")
    _arg(len(proofs) == len(updates), f"mismatched lengths: {len(updates)} sector updates, {len(proofs)} proofs")
    info = state.miner_info(miner)
    seen = set()
    for i, u in enumerate(updates):
        where = f"SectorUpdates[{i}]"
        number = u["Sector"]
        _arg(number not in seen, f"{where}: sector {number} twice")
        seen.add(number)
        s = state.get_sector(miner, number)
        _arg(s is not None, f"{where}: sector {number} is not live", ExitCode.NOT_FOUND)
        _arg(not s.deal_ids and s.sector_key_cid is None, f"{where}: sector {number} is not a CC sector")
        row = state.db.execute("SELECT deadline, partition, faulty FROM sector_deadlines WHERE miner = ? AND number = ?",
                               (miner, number)).fetchone()
        _arg(row is not None and (row[0], row[1]) == (u["Deadline"], u["Partition"]),
             f"{where}: sector {number} is not in deadline {u['Deadline']} partition {u['Partition']}")
        _arg(not row[2], f"{where}: sector {number} is faulty")
        _arg(dl.is_mutable(state.policy, info.proving_period_start, row[0], state.epoch),
             f"{where}: sector {number} is in deadline {row[0]}, which is being proven or is next")
        try:
            proof_type = update_proof(p["UpdateProofsType"])
            kind, comm_r_new = cid_to_commitment(u["NewSealedCID"]["/"])
        except (ProofError, ValueError) as exc:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"{where}: {exc}") from None
        _arg(kind == "sealed", f"{where}: NewSealedCID is not a sealed commitment")
        _arg(proof_type.id == update_proof_for_seal(seal_proof(s.seal_proof)).id,
             f"{where}: update proof type {proof_type.name} does not fit the sector's seal proof")
        deal_ids = deals_of_pieces(state, miner, u["Pieces"], where)
        _arg(bool(deal_ids), f"{where}: an update needs deals")
        comm_d_new = market.check_precommit(state, miner, number, s.seal_proof, deal_ids, s.expiration)
        comm_r_old = cid_to_commitment(s.sealed_cid)[1]
        replica_proof = base64.b64decode(proofs[i])
        try:
            trusted = accept_unverified(state.policy, "update", replica_proof, f"{where}: sector {number}",
                                        proof_type.partitions)
        except ProofError as exc:      # a Groth16 proof the devnet cannot verify: refused, saying so
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, str(exc)) from None
        try:
            if not trusted:
                verify_update_proof(proof_type, comm_r_old, comm_r_new, comm_d_new, replica_proof)
        except ProofError as exc:
            raise ActorError(ExitCode.ILLEGAL_ARGUMENT, f"{where}: invalid replica update proof for sector {number}: {exc}") from None
        market.activate(state, miner, number, deal_ids)
        updated = replace(s, sealed_cid=u["NewSealedCID"]["/"], unsealed_cid=commd_to_cid(comm_d_new), deal_ids=list(deal_ids),
                          sector_key_cid=s.sealed_cid)
        state.db.execute("UPDATE sectors SET info = ? WHERE miner = ? AND number = ?", (json.dumps(asdict(updated)), miner, number))


METHODS = {"ProveReplicaUpdates3": prove_replica_updates3}
