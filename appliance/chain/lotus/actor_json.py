"""The manager's message params, where it still sends the devnet's shapes (sector lists as JSON
lists, CIDs as strings), to the miner actor's current methods as go-state-types renders them in
JSON (what the codec, appliance.chain.actor_params, encodes), and back for the devnet's API.

builtin-actors at b0a3bdd6 (actors/miner/src/lib.rs `enum Method`) has retired
ProveCommitSector (7), ProveCommitAggregate (26) and ProveReplicaUpdates (27): proofs go as
ProveCommitSectors3 (34), one SectorActivationManifest per sector; an aggregate is carried in
AggregateProof (the devnet's stand-in aggregate, miner_actor.encode_aggregate, is not SnarkPack:
a real chain refuses it, docs/chain.md). Field names from go-state-types builtin/v16+
miner/miner_types.go (commit 8b01cf99). A manager that already sends the actor's methods in their
Go shapes (the devnet taking the same) needs no mapping: both directions are then the identity."""

from __future__ import annotations

from ..types import ChainError
from .shapes import numbers, runs

SNARKPACK_V2 = 1          # abi.RegisteredAggregationProof_SnarkPackV2


def _cid(value) -> dict | None:
    return None if value is None else {"/": value}


def _uncid(value, where: str):
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("/"), str):
        raise ChainError(f'{where}: expected a CID {{"/": "..."}}, got {value!r}')
    return value["/"]


def _objs(params: dict, key: str, where: str) -> list[dict]:
    v = params.get(key) if isinstance(params, dict) else None
    if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
        raise ChainError(f"{where}.{key}: expected a list of objects")
    return v


def manager_speaks_actor_methods() -> bool:
    """Whether the manager's messages are already the actor's methods in go-state-types' shapes
    (the devnet then executes those names): nothing to map either way."""
    from ..devnet import METHODS
    return "PreCommitSectorBatch2" in METHODS


def to_actor(method: str, params: dict) -> tuple[str, dict]:
    """(actor method name, Go-JSON params) for a manager message."""
    return (method, params) if manager_speaks_actor_methods() else legacy_to_actor(method, params)


def from_actor(actor_method: str, params: dict) -> tuple[str, dict]:
    """(the devnet's method name, its params) for a decoded actor message."""
    return (actor_method, params) if manager_speaks_actor_methods() else legacy_from_actor(actor_method, params)


def legacy_to_actor(method: str, params: dict) -> tuple[str, dict]:
    """A message in the devnet's own shapes as the actor's current method and Go-JSON params."""
    if method == "PreCommitSectorBatch":
        return "PreCommitSectorBatch2", {"Sectors": [
            {"SealProof": s.get("SealProof"), "SectorNumber": s.get("SectorNumber"), "SealedCID": _cid(s.get("SealedCID")),
             "SealRandEpoch": s.get("SealRandEpoch"), "DealIDs": list(s.get("DealIDs") or []),
             "Expiration": s.get("Expiration"), "UnsealedCid": _cid(s.get("UnsealedCID"))}
            for s in _objs(params, "Sectors", method)]}
    if method == "ProveCommitSector":
        return "ProveCommitSectors3", {
            "SectorActivations": [{"SectorNumber": params.get("SectorNumber"), "Pieces": []}],
            "SectorProofs": [params.get("Proof")], "AggregateProof": None, "AggregateProofType": None,
            "RequireActivationSuccess": True, "RequireNotificationSuccess": False}
    if method == "ProveCommitAggregate":
        return "ProveCommitSectors3", {
            "SectorActivations": [{"SectorNumber": n, "Pieces": []} for n in params.get("SectorNumbers") or []],
            "SectorProofs": None, "AggregateProof": params.get("AggregateProof"), "AggregateProofType": SNARKPACK_V2,
            "RequireActivationSuccess": True, "RequireNotificationSuccess": False}
    if method == "SubmitWindowedPoSt":
        return method, {**params, "Partitions": [{"Index": p.get("Index"), "Skipped": runs(p.get("Skipped") or [])}
                                                 for p in _objs(params, "Partitions", method)]}
    if method in ("DeclareFaults", "DeclareFaultsRecovered"):
        key = "Faults" if method == "DeclareFaults" else "Recoveries"
        return method, {key: [{"Deadline": d.get("Deadline"), "Partition": d.get("Partition"),
                               "Sectors": runs(d.get("Sectors") or [])} for d in _objs(params, key, method)]}
    raise ChainError(f"{method}: not sendable to a Lotus node yet (no mapping to a current miner actor method)")


def legacy_from_actor(actor_method: str, params: dict) -> tuple[str, dict]:
    """The inverse of legacy_to_actor."""
    where = actor_method
    if actor_method == "PreCommitSectorBatch2":
        return "PreCommitSectorBatch", {"Sectors": [
            {"SealProof": s.get("SealProof"), "SectorNumber": s.get("SectorNumber"),
             "SealedCID": _uncid(s.get("SealedCID"), f"{where}.Sectors[{i}].SealedCID"),
             "SealRandEpoch": s.get("SealRandEpoch"), "DealIDs": list(s.get("DealIDs") or []),
             "Expiration": s.get("Expiration"), "UnsealedCID": _uncid(s.get("UnsealedCid"), f"{where}.Sectors[{i}].UnsealedCid")}
            for i, s in enumerate(_objs(params, "Sectors", where))]}
    if actor_method == "ProveCommitSectors3":
        sectors = [a.get("SectorNumber") for a in _objs(params, "SectorActivations", where)]
        if any(a.get("Pieces") for a in params["SectorActivations"]):
            raise ChainError(f"{where}: piece manifests (DDO) are not taken by the devnet, whose deals go in the PreCommit")
        proofs = params.get("SectorProofs") or []
        if params.get("AggregateProof"):
            return "ProveCommitAggregate", {"SectorNumbers": sectors, "AggregateProof": params["AggregateProof"]}
        if len(sectors) != 1 or len(proofs) != 1:
            raise ChainError(f"{where}: the devnet takes one sector per message without an aggregate, got {len(sectors)} "
                             f"sectors and {len(proofs)} proofs")
        return "ProveCommitSector", {"SectorNumber": sectors[0], "Proof": proofs[0]}
    if actor_method == "SubmitWindowedPoSt":
        return actor_method, {**params, "Partitions": [
            {"Index": p.get("Index"), "Skipped": list(numbers(p.get("Skipped") or [0], f"{where}.Partitions[{i}].Skipped"))}
            for i, p in enumerate(_objs(params, "Partitions", where))]}
    if actor_method in ("DeclareFaults", "DeclareFaultsRecovered"):
        key = "Faults" if actor_method == "DeclareFaults" else "Recoveries"
        return actor_method, {key: [{"Deadline": d.get("Deadline"), "Partition": d.get("Partition"),
                                     "Sectors": list(numbers(d.get("Sectors") or [0], f"{where}.{key}[{i}].Sectors"))}
                                    for i, d in enumerate(_objs(params, key, where))]}
    raise ChainError(f"{actor_method}: the devnet does not take this method over its API")
