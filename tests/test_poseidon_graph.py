import hashlib
import random

import numpy as np
import pytest

from appliance.core.proof_types import ApiVersion, seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.field import MODULUS
from appliance.proofs.graph import GraphSpec, cache_id, iter_parent_chunks, load_parents, write_parent_cache
from appliance.proofs.pc1 import label_layer, replica_id
from appliance.proofs.poseidon import constants, hash_fr, hash_reference


def limbs(*ls: int) -> int:
    return sum(v << (64 * i) for i, v in enumerate(ls))


# neptune v11.0.0 (argumentcomputer/neptune ef8a821f8eba755ca8487c224f704fddbbc94e47) src/poseidon.rs
# hash_values, Strength::Standard, HashType::MerkleTree, preimage 0..arity-1
NEPTUNE = {
    2: limbs(0x2E203C369A02E7FF, 0xA6FBA9339D05A69D, 0x739E0FD902EFE161, 0x396508D75E76A56B),
    4: limbs(0x019814FF6662075D, 0xFB6B4605BF1327EC, 0x00DB3C6579229399, 0x58A54B10A9E5848A),
    8: limbs(0x2A9934F56D38A5E6, 0x4B682E9D9CC4AED9, 0x1201004211677077, 0x2394611DA3A5DE55),
    11: limbs(0xCEE3BBC32B693163, 0x09F3DCD8CCB08FC1, 0x6CA537E232EBE87A, 0x0C0FC1B2E5227F28),
}


@pytest.mark.parametrize("arity", sorted(NEPTUNE))
def test_neptune_vectors(arity):
    assert hash_fr(list(range(arity))) == NEPTUNE[arity]
    assert hash_reference(list(range(arity))) == NEPTUNE[arity]


def test_filecoin_hashers_vector():
    # rust-fil-proofs 87348a749d80447d00c595af834a8ed73c09e4d9 filecoin-hashers/src/poseidon.rs test_poseidon_hasher
    h10 = hash_fr([1, 0])
    assert h10 == limbs(0xB339FF6079800B5E, 0xEC5907B3DC3094AF, 0x93C003CC74A24F26, 0x042F94FFBE786BC3)
    assert hash_fr([h10, hash_fr([0, 1])]) == limbs(0xEFBB8BE3E291E671, 0x77CC72B8CB2B5AD2, 0x30EB6385AE6B74AE, 0x1EFFEBB7B26AD9EB)


@pytest.mark.parametrize("arity", [2, 8, 11])
def test_fast_path_equals_reference(arity):
    rng = random.Random(arity)
    for _ in range(3):
        xs = [rng.randrange(MODULUS) for _ in range(arity)]
        assert hash_fr(xs) == hash_reference(xs)
    assert constants(arity).r_p in (55, 57)


# rust-fil-proofs 87348a749d80447d00c595af834a8ed73c09e4d9 storage-proofs-porep/parent_cache.json
PARENT_CACHE_JSON = {
    0: ("v28-sdr-parent-3f0eef38bb48af1f48ad65e14eb85b4ebfc167cec18cd81764f6d998836c9899", "3da49221e2ed55371b86d0bf3d6526fcf128af61bed904f966428db1b531750d"),
    5: ("v28-sdr-parent-494d91dc80f2df5272c4b9e129bc7ade9405225993af9fe34e6542a39a47554b", "840057702eea7652cf97e04306c30fe57174714d90de156a25eddd6075c25b97"),
    1: ("v28-sdr-parent-dcdabb0fbe4364bf0ac28b6a18c66de246409fa1a9020a00f33fb3e3053da6dc", "a76604f2f59f2744c7151653bbb1d8596b6b57d295e6fa6c1f0c41d725b502ce"),
    6: ("v28-sdr-parent-5eed212119fd91aa6220a27f31a8966444a9381842bceb3a1ea61525bd47a5b5", "03cd13565ded97c240a5f52e54295ad127bd0461b57904cb3a4d79b097bbecab"),
    2: ("v28-sdr-parent-2aa9c77c3e58259481351cc4be2079cc71e1c9af39700866545c043bfa30fb42", None),
    3: ("v28-sdr-parent-e1fa5d5b811ddbd118be3412c4a8c329156b8b8acc72632bca459455b5a05a13", None),
    4: ("v28-sdr-parent-8a99e8d6b6be7ab87a56b632e6739ff201c23ea14e99737c74690f0e265574d6", None),
    7: ("v28-sdr-parent-7ba215a1d2345774ab90b8cb1158d296e409d6068819d7b8c7baf0b25d63dc34", None),
    8: ("v28-sdr-parent-21981246c370f9d76c7a77ab273d94bde0ceb4e938292334960bce05585dc117", None),
    9: ("v28-sdr-parent-4905486b7af19558ac3649bc6261411858b6add534438878c4ee3b29d8b9de0b", None),
}


@pytest.mark.parametrize("pid", sorted(PARENT_CACHE_JSON))
def test_parent_cache_ids(pid):
    assert cache_id(seal_proof(pid)) == PARENT_CACHE_JSON[pid][0]


@pytest.mark.parametrize("pid", [0, 5])
def test_parent_cache_digest_2kib(pid, tmp_path):
    path, digest = write_parent_cache(seal_proof(pid), tmp_path)
    assert path.name == PARENT_CACHE_JSON[pid][0] + ".cache"
    assert digest == PARENT_CACHE_JSON[pid][1] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_parents(seal_proof(pid), tmp_path).shape == (64, 14)


@pytest.mark.slow
@pytest.mark.parametrize("pid", [1, 6])
def test_parent_cache_digest_8mib(pid, tmp_path):
    assert write_parent_cache(seal_proof(pid), tmp_path)[1] == PARENT_CACHE_JSON[pid][1]


def test_replica_id_vector():
    # go-state-types abi/sector_test.go TestReplicaID (commit 8b01cf9)
    ticket = bytes.fromhex("0102030405060708090a" * 3 + "0102")
    comm_d = bytes.fromhex("fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833")
    rid = replica_id(SectorID(123, 1), ticket, comm_d, seal_proof(0))
    assert rid.hex() == "1e2e06391a0d1b99dc896aa6f7fa113ff8e993cbdcbfb503e99571603b61a016"


# rust-fil-proofs 87348a749d80447d00c595af834a8ed73c09e4d9 storage-proofs-porep/tests/stacked_vanilla.rs
# test_generate_labels_aux: replica_id [9;32], 11 layers, label of the last node of layer 11
LABELS = [
    (bytes(32), ApiVersion.V1_0_0, 64, "04ba0f9a6ba9fad35e4806d183a281eab3c25afa9a1bd5e3378da6f1f4f46204"),
    (bytes(32), ApiVersion.V1_0_0, 128, "86daa8c4521e197e48c1fae6c9a1e85ab894a8883b9f23cebe531ddcd1004c23"),
    (bytes([123]) * 32, ApiVersion.V1_1_0, 64, "cfef0db78bf3b3ab9f1169774d2e7a77bc9054499d954834b51ca7c788110206"),
    (bytes([123]) * 32, ApiVersion.V1_1_0, 128, "6d67c468cf81ab2289c1c9c72fa8777a232de4c1323dc0c6bd552ccc187c770f"),
]


@pytest.mark.parametrize("porep_id,api,nodes,want", LABELS)
def test_sdr_label_vectors(porep_id, api, nodes, want):
    parents = np.concatenate([c for _, c in iter_parent_chunks(GraphSpec(porep_id, nodes, api))])
    labels = None
    for layer in range(1, 12):
        labels = label_layer(bytes([9]) * 32, layer, parents, labels)
    assert labels[-32:].hex() == want
