import shutil

import pytest

from appliance.core.proof_types import post_proof, seal_proof
from appliance.core.sector import SectorID
from appliance.proofs import ProofError
from appliance.proofs.post import (PrivateSector, PublicSector, decode_post, encode_post, generate_window_post,
                                   generate_winning_post, leaf_challenge, verify_post, winning_sector_indices)
from appliance.proofs.seal import find_sectors, seal_sector

from .proofutil import mutations

P2K = seal_proof("StackedDrg2KiBV1_1")
WINDOW = post_proof("StackedDrgWindow2KiBV1_1")
RAND = bytes(range(31)) + b"\x1f"


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    d = tmp_path_factory.mktemp("farm")
    for n in (1, 2, 3):
        seal_sector(P2K, SectorID(1000, n), bytes([n]) * 32, bytes([1]) * 32, d)
    return d


def _private(metas):
    return [PrivateSector(m.sector.number, m.comm_r, m.dir / "cache", m.dir / "sealed") for m in metas]


def _public(metas, skip=()):
    return [PublicSector(m.sector.number, m.comm_r) for m in metas if m.sector.number not in skip]


def test_window_post_proves_and_verifies(farm):
    metas = find_sectors(farm)
    res = generate_window_post(WINDOW, P2K, _private(metas), RAND)
    assert not res.faults and [len(p) for p in res.partitions] == [2, 1]   # 2 sectors per 2KiB partition
    verify_post(WINDOW, RAND, _public(metas), decode_post(encode_post(res)))
    with pytest.raises(ProofError, match="comm_r"):
        verify_post(WINDOW, RAND, [PublicSector(1, bytes(32))] + _public(metas)[1:], res)
    other = bytes(range(1, 32)) + b"\x1f"
    with pytest.raises(ProofError, match="challenged"):
        verify_post(WINDOW, other, _public(metas), res)


def test_post_challenges_follow_api_version():
    # Window V1_1 (api 1.2): challenge index n; Window V1 (api 1.0): sector_index * 10 + n
    from appliance.proofs.post import challenge_index
    assert challenge_index(post_proof(10), 3, 4) == 4
    assert challenge_index(post_proof(5), 3, 4) == 34
    assert 0 <= leaf_challenge(RAND, 7, 0, 64) < 64


def test_missing_and_truncated_sectors_are_faults(farm, tmp_path):
    d = tmp_path / "farm"
    shutil.copytree(farm, d)
    (d / "s-t01000-2" / "sealed").unlink()
    t = d / "s-t01000-3" / "cache" / "sc-02-data-tree-r-last.dat"
    t.write_bytes(t.read_bytes()[:10])
    metas = find_sectors(d)
    res = generate_window_post(WINDOW, P2K, _private(metas), RAND)
    assert sorted(res.faults) == [2, 3]
    assert "missing" in res.faults[2] and "tree-r-last" in res.faults[3]
    verify_post(WINDOW, RAND, _public(metas, skip=(2, 3)), res)


def test_corrupt_replica_is_a_fault(farm, tmp_path):
    d = tmp_path / "farm"
    shutil.copytree(farm, d)
    s = d / "s-t01000-1" / "sealed"
    data = bytearray(s.read_bytes())
    data[100] ^= 1
    s.write_bytes(bytes(data))
    res = generate_window_post(WINDOW, P2K, _private(find_sectors(d)), RAND)
    assert list(res.faults) == [1]


def test_every_post_field_tampered_fails(farm):
    metas = find_sectors(farm)[:2]
    res = generate_window_post(WINDOW, P2K, _private(metas), RAND)
    n = 0
    for path, bad in mutations(res, lambda p: "faults" not in p):
        with pytest.raises(ProofError):
            verify_post(WINDOW, RAND, _public(metas), bad)
        n += 1
    assert n > 300


def test_post_strict_parsing(farm):
    metas = find_sectors(farm)
    raw = encode_post(generate_window_post(WINDOW, P2K, _private(metas), RAND))
    with pytest.raises(ProofError, match="trailing"):
        decode_post(raw + b"\0")
    with pytest.raises(ProofError, match="truncated"):
        decode_post(raw[:-3])
    with pytest.raises(ProofError, match="unknown version"):
        decode_post(raw[:4] + b"\x07\x00" + raw[6:])
    with pytest.raises(ProofError, match="unknown PoSt proof type"):
        decode_post(raw[:6] + b"\x63\x00" + raw[8:])


def test_randomness_must_be_canonical(farm):
    with pytest.raises(ProofError, match="canonical"):
        generate_window_post(WINDOW, P2K, _private(find_sectors(farm)), b"\xff" * 32)
    with pytest.raises(ProofError, match="32 bytes"):
        generate_window_post(WINDOW, P2K, _private(find_sectors(farm)), b"\x01" * 31)


def test_winning_post(farm):
    metas = find_sectors(farm)
    winning = post_proof("StackedDrgWinning2KiBV1")
    idx = winning_sector_indices(SectorID(1000, 0).prover_id, RAND, len(metas))[0]
    m = metas[idx]
    res = generate_winning_post(winning, P2K, _private([m])[0], RAND)
    assert len(res.partitions[0][0].openings) == 66
    verify_post(winning, RAND, _public([m]), decode_post(encode_post(res)))
