"""Miner message params for tests, in the Go JSON shape the devnet reads (appliance.chain.actor_params)."""

import base64

from appliance.chain.actor_params import SNARK_PACK_V2
from appliance.chain.bitfield import json_from_numbers
from appliance.proofs.cid import commd_to_cid, commr_to_cid


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def precommit_sector(seal_proof: int, number: int, comm_r: bytes, comm_d: bytes | None, rand_epoch: int,
                     expiration: int, deal_ids=(), **over) -> dict:
    s = {"SealProof": seal_proof, "SectorNumber": number, "SealedCID": {"/": commr_to_cid(comm_r)},
         "SealRandEpoch": rand_epoch, "DealIDs": list(deal_ids), "Expiration": expiration,
         "UnsealedCid": None if comm_d is None else {"/": commd_to_cid(comm_d)}}
    s.update(over)
    return s


def prove_commit(proofs: dict[int, bytes], pieces: dict[int, list] | None = None) -> dict:
    """ProveCommitSectors3 with each sector's own proof."""
    numbers = sorted(proofs)
    return {"SectorActivations": [{"SectorNumber": n, "Pieces": (pieces or {}).get(n, [])} for n in numbers],
            "SectorProofs": [b64(proofs[n]) for n in numbers], "AggregateProof": "", "AggregateProofType": None,
            "RequireActivationSuccess": True, "RequireNotificationSuccess": True}


def prove_commit_aggregate(numbers: list[int], aggregate: bytes) -> dict:
    return {"SectorActivations": [{"SectorNumber": n, "Pieces": []} for n in numbers], "SectorProofs": [],
            "AggregateProof": b64(aggregate), "AggregateProofType": SNARK_PACK_V2,
            "RequireActivationSuccess": True, "RequireNotificationSuccess": True}


def declarations(key: str, deadline: int, partition: int, sectors) -> dict:
    """DeclareFaults ("Faults") / DeclareFaultsRecovered ("Recoveries") of one partition."""
    return {key: [{"Deadline": deadline, "Partition": partition, "Sectors": json_from_numbers(sectors)}]}
