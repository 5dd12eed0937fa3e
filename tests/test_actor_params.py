"""Miner message params against CBOR bytes derived by hand from go-state-types'
builtin/v19/miner/cbor_gen.go (commit 8b01cf99da27e805fac8fbf2091ec1de10790c62): every struct is
an array of its fields in order (lengthBuf<Struct> = 0x80 + field count), ints with the shortest
major-type-0/1 header, []byte as major type 2, cbg.WriteCid = tag 42 (d8 2a) over 0x00 + CID,
nil pointers as f6, WriteBool as f4/f5, big.Int / bitfield / address as byte strings.
The expected bytes below are written from that reading, not produced by cbor2."""

import base64
import re

import pytest

from appliance.chain.actor_params import (DEPRECATED, METHODS, ParamsError, decode_params, encode_params,
                                          method_name, method_number)
from appliance.proofs.cid import commd_to_cid, commr_to_cid

COMM_R = bytes(range(32))
COMM_D = bytes(range(32, 64))
SEALED = {"/": commr_to_cid(COMM_R)}
PIECE = {"/": commd_to_cid(COMM_D)}
# tag 42, byte string of 41 = 0x29 bytes: 0x00 + CIDv1 (01) fil-commitment-sealed (82 e2 03)
# poseidon-bls12_381-a2-fc1 (81 e8 02) length 32 (20) + digest
SEALED_HEX = "d82a5829" + "00" + "0182e20381e80220" + COMM_R.hex()
# 40 = 0x28 bytes: 0x00 + 01, fil-commitment-unsealed (81 e2 03), sha2-256-trunc254-padded (92 20), 20 + digest
PIECE_HEX = "d82a5828" + "00" + "0181e203922020" + COMM_D.hex()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


CASES = {
    "PreCommitSectorBatch2": (
        {"Sectors": [
            {"SealProof": 8, "SectorNumber": 1000, "SealedCID": SEALED, "SealRandEpoch": 100,
             "DealIDs": [5, 70000], "Expiration": 1555200, "UnsealedCid": PIECE},
            {"SealProof": 8, "SectorNumber": 1001, "SealedCID": SEALED, "SealRandEpoch": -5,
             "DealIDs": [], "Expiration": 1555200, "UnsealedCid": None}]},
        "81" "82"                                   # params: 1 field; Sectors: 2 elements
        "87" "08" "1903e8" + SEALED_HEX + "1864"    # SectorPreCommitInfo (7): 8, 1000, SealedCID, 100
        "82" "05" "1a00011170"                      # DealIDs [5, 70000]
        "1a0017bb00" + PIECE_HEX +                  # Expiration 1555200, UnsealedCid
        "87" "08" "1903e9" + SEALED_HEX + "24"      # 8, 1001, SealedCID, -5 (major 1: 4)
        "80" "1a0017bb00" "f6"),                    # no deals, Expiration, UnsealedCid nil
    "ProveCommitSectors3": (
        {"SectorActivations": [{"SectorNumber": 7, "Pieces": [
            {"CID": PIECE, "Size": 2048, "VerifiedAllocationKey": {"Client": 1000, "ID": 3},
             "Notify": [{"Address": "f05", "Payload": b64(b"\x01\x02")}]}]}],
         "SectorProofs": [b64(b"\xaa" * 3)], "AggregateProof": "", "AggregateProofType": None,
         "RequireActivationSuccess": True, "RequireNotificationSuccess": False},
        "86" "81"                                   # 6 fields; SectorActivations: 1
        "82" "07" "81"                              # SectorActivationManifest: 7, Pieces: 1
        "84" + PIECE_HEX + "190800"                 # PieceActivationManifest: CID, Size 2048
        "82" "1903e8" "03"                          # VerifiedAllocationKey {1000, 3}
        "81" "82" "420005" "420102"                 # Notify: [{f05 = 00 05, Payload 01 02}]
        "81" "43aaaaaa"                             # SectorProofs
        "40" "f6" "f5" "f4"),                       # AggregateProof empty, type nil, true, false
    "ProveCommitAggregate": (
        {"SectorNumbers": [0, 3, 5, 2], "AggregateProof": b64(b"\x01\x02\x03\x04")},
        # {0,1,2,8,9}: bits 00 | 1 | 01+0011 | 01+0101 | 01+0100 (LSB first) = 74 2c 05
        "82" "43742c05" "4401020304"),
    "SubmitWindowedPoSt": (
        {"Deadline": 3, "Partitions": [{"Index": 0, "Skipped": [0]}],
         "Proofs": [{"PoStProof": 3, "ProofBytes": b64(bytes([0x11]) * 24)}],
         "ChainCommitEpoch": 500, "ChainCommitRand": b64(bytes([0x22]) * 32)},
        "85" "03" "81" "82" "00" "40"               # Deadline 3; Partitions [{0, empty bitfield}]
        "81" "82" "03" "5818" + "11" * 24 +         # Proofs [{3, 24 bytes: 2-byte header}]
        "1901f4" "5820" + "22" * 32),               # ChainCommitEpoch 500, ChainCommitRand
    "DeclareFaults": (
        {"Faults": [{"Deadline": 1, "Partition": 0, "Sectors": [5, 1]}]},
        # {5}: bits 00 | 0 | 01+0101 | 1 = b0 02
        "81" "81" "83" "01" "00" "42b002"),
    "DeclareFaultsRecovered": (
        {"Recoveries": [{"Deadline": 47, "Partition": 2, "Sectors": [20, 3]}]},
        # {20,21,22}: bits 00 | 0 | 00 + varint 0x14 | 01+0011 = 80 c2 01
        "81" "81" "83" "182f" "02" "4380c201"),
    "ProveReplicaUpdates3": (
        {"SectorUpdates": [{"Sector": 9, "Deadline": 4, "Partition": 0, "NewSealedCID": SEALED, "Pieces": []}],
         "SectorProofs": [b64(b"\x07\x07")], "AggregateProof": "", "UpdateProofsType": 3,
         "AggregateProofType": None, "RequireActivationSuccess": True, "RequireNotificationSuccess": False},
        "87" "81" "85" "09" "04" "00" + SEALED_HEX + "80"   # SectorUpdateManifest (5)
        "81" "420707" "40" "03" "f6" "f5" "f4"),
    "ExtendSectorExpiration2": (
        {"Extensions": [{"Deadline": 0, "Partition": 1, "Sectors": [1, 1],
                         "SectorsWithClaims": [{"SectorNumber": 2, "MaintainClaims": [10], "DropClaims": []}],
                         "NewExpiration": 3000000}]},
        # {1}: bits 00 | 0 | 1 | 1 = 18
        "81" "81" "85" "00" "01" "4118" "81" "83" "02" "810a" "80" "1a002dc6c0"),
    "TerminateSectors": (
        {"Terminations": [{"Deadline": 2, "Partition": 0, "Sectors": [0, 1]}]},
        # {0}: bits 00 | 1 | 1 = 0c
        "81" "81" "83" "02" "00" "410c"),
    "WithdrawBalance": (
        {"AmountRequested": "1000000000000000000"},
        "81" "49" "00" "0de0b6b3a7640000"),          # sign byte 0 + 10^18 big-endian
    "ChangeWorkerAddress": (
        {"NewWorker": "f01234", "NewControlAddrs": ["f0100"]},
        "82" "4300d209" "81" "420064"),              # f01234 = 00 + uvarint(1234) = 00 d2 09
}


def test_every_method_has_a_vector():
    assert set(CASES) == set(METHODS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_encode_matches_cbor_gen(name):
    params, expected = CASES[name]
    assert encode_params(name, params).hex() == expected


@pytest.mark.parametrize("name", sorted(CASES))
def test_decode_is_the_inverse(name):
    params, expected = CASES[name]
    assert decode_params(name, bytes.fromhex(expected)) == params
    assert decode_params(name, encode_params(name, params)) == params


def test_zero_and_negative_token_amounts():
    assert encode_params("WithdrawBalance", {"AmountRequested": "0"}).hex() == "8140"
    assert encode_params("WithdrawBalance", {"AmountRequested": "-256"}).hex() == "8143010100"
    assert decode_params("WithdrawBalance", bytes.fromhex("8143010100")) == {"AmountRequested": "-256"}


def test_aggregate_in_prove_commit_sectors3():
    params = {"SectorActivations": [{"SectorNumber": 1, "Pieces": []}, {"SectorNumber": 2, "Pieces": []}],
              "SectorProofs": [], "AggregateProof": b64(b"\x09" * 4), "AggregateProofType": 1,
              "RequireActivationSuccess": True, "RequireNotificationSuccess": True}
    expected = "86" "82" "820180" "820280" "80" "4409090909" "01" "f5" "f5"
    assert encode_params("ProveCommitSectors3", params).hex() == expected
    assert decode_params("ProveCommitSectors3", bytes.fromhex(expected)) == params


def test_method_numbers_follow_builtin_actors():
    # builtin-actors actors/miner/src/lib.rs (b0a3bdd) enum Method
    assert method_number("PreCommitSectorBatch2") == 28
    assert method_number("ProveCommitSectors3") == 34
    assert method_number("ProveReplicaUpdates3") == 35
    assert method_number("SubmitWindowedPoSt") == 5
    assert method_number("DeclareFaults") == 10 and method_number("DeclareFaultsRecovered") == 11
    assert method_name(34) == "ProveCommitSectors3"
    assert "ProveCommitAggregate" in DEPRECATED
    with pytest.raises(ParamsError, match="PreCommitSectorBatch"):
        method_number("PreCommitSectorBatch")
    with pytest.raises(ParamsError, match="7"):
        method_name(7)


@pytest.mark.parametrize("name, params, field", [
    ("PreCommitSectorBatch2", {"Sectors": [{**CASES["PreCommitSectorBatch2"][0]["Sectors"][0], "SealProof": "8"}]},
     "Sectors[0].SealProof"),
    ("PreCommitSectorBatch2", {"Sectors": [{**CASES["PreCommitSectorBatch2"][0]["Sectors"][0], "SealedCID": "bagboea"}]},
     "Sectors[0].SealedCID"),
    ("PreCommitSectorBatch2", {"Sectors": [{**CASES["PreCommitSectorBatch2"][0]["Sectors"][0], "SealedCID": {"/": "bagboeax"}}]},
     "Sectors[0].SealedCID"),
    ("PreCommitSectorBatch2", {"Sectors": [{**CASES["PreCommitSectorBatch2"][0]["Sectors"][0], "DealIDs": [-1]}]},
     "Sectors[0].DealIDs[0]"),
    ("PreCommitSectorBatch2", {"Sectors": [{k: v for k, v in CASES["PreCommitSectorBatch2"][0]["Sectors"][0].items()
                                            if k != "Expiration"}]}, "Sectors[0].Expiration: missing"),
    ("PreCommitSectorBatch2", {"Sectors": [{**CASES["PreCommitSectorBatch2"][0]["Sectors"][0], "UnsealedCID": None}]},
     "unknown field"),
    ("ProveCommitSectors3", {**CASES["ProveCommitSectors3"][0], "SectorProofs": ["not base64!"]}, "SectorProofs[0]"),
    ("ProveCommitSectors3", {**CASES["ProveCommitSectors3"][0], "RequireActivationSuccess": 1},
     "RequireActivationSuccess"),
    ("DeclareFaults", {"Faults": [{"Deadline": 1, "Partition": 0, "Sectors": [1, 0, 2]}]}, "Faults[0].Sectors[1]"),
    ("ChangeWorkerAddress", {"NewWorker": "f9123", "NewControlAddrs": []}, "NewWorker"),
    ("WithdrawBalance", {"AmountRequested": "1.5"}, "AmountRequested"),
    ("SubmitWindowedPoSt", {**CASES["SubmitWindowedPoSt"][0], "Deadline": 2 ** 64}, "Deadline"),
])
def test_bad_input_names_the_field(name, params, field):
    with pytest.raises(ParamsError, match=re.escape(field)):
        encode_params(name, params)


def test_decode_refuses_non_canonical():
    # TerminateSectors with Deadline 2 written as 18 02 (non-minimal header)
    with pytest.raises(ParamsError, match="canonical"):
        decode_params("TerminateSectors", bytes.fromhex("81" "81" "83" "1802" "00" "410c"))
    # a trailing zero byte in the RLE+ (go-bitfield: "not minimally encoded")
    with pytest.raises(ParamsError, match=r"Terminations\[0\].Sectors"):
        decode_params("TerminateSectors", bytes.fromhex("81" "81" "83" "02" "00" "420c00"))
    # trailing bytes after the params
    with pytest.raises(ParamsError, match="canonical"):
        decode_params("TerminateSectors", bytes.fromhex("81" "81" "83" "02" "00" "410c" "00"))


def test_decode_errors_name_the_field():
    with pytest.raises(ParamsError, match="TerminateSectors params: TerminateSectorsParams has 1 fields, got 2"):
        decode_params("TerminateSectors", bytes.fromhex("82" "80" "80"))
    with pytest.raises(ParamsError, match=r"Sectors\[0\].SealedCID: expected a CID"):
        bad = CASES["PreCommitSectorBatch2"][1].replace(SEALED_HEX, "4100", 1)
        decode_params("PreCommitSectorBatch2", bytes.fromhex(bad))
    with pytest.raises(ParamsError, match="not valid CBOR"):
        decode_params("DeclareFaults", b"\x81")
