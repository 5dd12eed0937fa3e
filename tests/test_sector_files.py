"""Corrupt sector files are refused with the file named, and left as they are: p_aux and t_aux
(wrong length, garbage, truncated), tree files of the wrong size; `util proving check` (the
poster's pre-check) catches a truncated t_aux, which it used to miss."""

import os
import struct

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.manager.proving import Proving
from appliance.proofs import ProofError
from appliance.proofs.pc2 import read_p_aux, read_t_aux, t_aux_bytes
from appliance.proofs.porep import seal_commit_phase1
from appliance.proofs.post import PrivateSector, check_sector
from appliance.proofs.seal import seal_sector

from .test_poster import post_svc  # noqa: F401 (fixture)

P2K = seal_proof("StackedDrg2KiBV1_1")
P32G = seal_proof("StackedDrg32GiBV1_1")


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    d = tmp_path_factory.mktemp("sealed")
    return seal_sector(P2K, SectorID(1000, 1), bytes(32), bytes([7]) * 32, d / "w", parent_cache_dir=d / "parents")


def _check(sealed, cache):
    check_sector(P2K, PrivateSector(1, sealed.comm_r, cache, sealed.sector_dir / "sealed"))


def _copy_cache(sealed, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in (sealed.sector_dir / "cache").iterdir():
        (cache / f.name).write_bytes(f.read_bytes())
    return cache


def test_the_files_of_a_good_sector_pass(sealed):
    _check(sealed, sealed.sector_dir / "cache")
    assert len(read_t_aux(sealed.sector_dir / "cache", P2K)) == P2K.size.layers + 3


T_AUX_CASES = [
    ("truncated", lambda b: b[:-5], "t_aux is truncated: .* ends inside rows_to_discard of store config 4"),
    ("cut in a path", lambda b: b[:20], "t_aux is truncated: 20 bytes, it ends inside the path of store config 0"),
    ("empty", lambda b: b"", "t_aux is truncated: 0 bytes"),
    ("extra bytes", lambda b: b + b"\0" * 3, "t_aux has 3 bytes after its last store config"),
    ("garbage", lambda b: os.urandom(len(b)), "t_aux (is not a t_aux|records)"),
    ("a huge path length", lambda b: b[:8] + struct.pack("<Q", 1 << 40) + b[16:], "would be 1099511627776 bytes long"),
    ("another size's layers", lambda b: struct.pack("<Q", 11) + b[8:], "records 11 label layers, StackedDrg2KiBV1_1 has 2"),
]


@pytest.mark.parametrize("name,mangle,message", T_AUX_CASES, ids=[c[0] for c in T_AUX_CASES])
def test_a_bad_t_aux_is_refused_naming_it_and_kept(sealed, tmp_path, name, mangle, message):
    cache = _copy_cache(sealed, tmp_path)
    bad = mangle((cache / "t_aux").read_bytes())
    (cache / "t_aux").write_bytes(bad)
    with pytest.raises(ProofError, match=message) as info:
        read_t_aux(cache, P2K)
    assert str(cache / "t_aux") in str(info.value)
    with pytest.raises(ProofError, match=message):
        _check(sealed, cache)
    assert (cache / "t_aux").read_bytes() == bad                 # kept as it is


def test_a_t_aux_of_another_sector_size_is_refused(tmp_path):
    (tmp_path / "t_aux").write_bytes(t_aux_bytes(P32G, tmp_path))
    with pytest.raises(ProofError, match="records 11 label layers"):
        read_t_aux(tmp_path, P2K)


@pytest.mark.parametrize("data,message", [
    (bytes(63), "has 63 bytes, expected 64"),
    (b"", "has 0 bytes, expected 64"),
    (b"\xff" * 64, "comm_c ff+ is not a field element"),
])
def test_a_bad_p_aux_is_refused_naming_it_and_kept(sealed, tmp_path, data, message):
    cache = _copy_cache(sealed, tmp_path)
    (cache / "p_aux").write_bytes(data)
    with pytest.raises(ProofError, match=message) as info:
        read_p_aux(cache)
    assert str(cache / "p_aux") in str(info.value)
    with pytest.raises(ProofError, match=message):
        _check(sealed, cache)
    assert (cache / "p_aux").read_bytes() == data


def test_a_tree_file_of_the_wrong_size_is_refused_naming_it(sealed, tmp_path):
    cache = _copy_cache(sealed, tmp_path)
    tree = cache / "sc-02-data-tree-r-last.dat"
    tree.write_bytes(tree.read_bytes()[:-32])
    with pytest.raises(ProofError, match=f"tree file {tree} has .* bytes, expected"):
        _check(sealed, cache)


def test_c1_refuses_a_truncated_t_aux(sealed, tmp_path):
    from appliance.proofs.pc2 import read_p_aux as p_aux
    cache = _copy_cache(sealed, tmp_path)
    (cache / "t_aux").write_bytes((cache / "t_aux").read_bytes()[:100])
    comm_c, comm_r_last = p_aux(cache)
    with pytest.raises(ProofError, match="t_aux is truncated"):
        seal_commit_phase1(P2K, SectorID(1000, 1), bytes(32), bytes([7]) * 32, sealed.comm_d, comm_c, comm_r_last, cache,
                           sealed.sector_dir / "sealed")


def test_proving_check_catches_a_truncated_t_aux(post_svc):  # noqa: F811
    svc, store = post_svc
    proving = Proving(svc.chain, svc.poster)
    assert all(r["Ok"] for r in proving.check(1000, None))
    t_aux = store / "cache" / "s-t01000-2" / "t_aux"
    t_aux.write_bytes(t_aux.read_bytes()[:-8])
    rows = {r["Sector"]: r for r in proving.check(1000, None)}
    assert not rows[2]["Ok"] and "t_aux is truncated" in rows[2]["Error"] and str(t_aux) in rows[2]["Error"]
    assert all(r["Ok"] for n, r in rows.items() if n != 2)
