"""The SDR parent cache is checked against rust-fil-proofs' digest before PC1 uses it: a cache
with one in-range index changed (which sealed sectors with a wrong CommR that still landed), an
out-of-range index or a truncated file is kept under a name that says so, rebuilt beside it and
logged; the check runs once per process per file, again when the file changes."""

import logging
import os

import numpy as np
import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs import ProofError
from appliance.proofs import parent_cache
from appliance.proofs.graph import DEGREE, cache_id, write_parent_cache
from appliance.proofs.parent_cache import EXPECTED_DIGESTS, check_file, load_parents
from appliance.proofs.pc1 import generate_labels
from appliance.proofs.seal import seal_sector

from .test_poseidon_graph import PARENT_CACHE_JSON

P2K = seal_proof("StackedDrg2KiBV1_1")


def _poke(path, node: int, slot: int, value: int) -> None:
    """Change one parent index in place (same size; the mtime moves)."""
    data = bytearray(path.read_bytes())
    at = (node * DEGREE + slot) * 4
    assert int.from_bytes(data[at:at + 4], "little") != value
    data[at:at + 4] = value.to_bytes(4, "little")
    path.write_bytes(bytes(data))


def test_the_expected_digests_are_rust_fil_proofs(tmp_path):
    for pid, (cid, digest) in PARENT_CACHE_JSON.items():
        assert cache_id(seal_proof(pid)) == cid
        assert len(EXPECTED_DIGESTS[cid]) == 64 and (digest is None or EXPECTED_DIGESTS[cid] == digest)
    assert len(EXPECTED_DIGESTS) >= 10


def test_one_in_range_index_changed_is_caught_before_pc1_and_the_commr_is_right(tmp_path, caplog):
    sector, ticket, seed = SectorID(1000, 1), bytes(32), bytes([7]) * 32
    good = seal_sector(P2K, sector, ticket, seed, tmp_path / "good", parent_cache_dir=tmp_path / "clean")
    path, _ = write_parent_cache(P2K, tmp_path / "parents")
    parents = np.fromfile(path, dtype="<u4").reshape(-1, DEGREE)
    node = 40
    _poke(path, node, 3, (int(parents[node, 3]) + 1) % node)       # still a valid earlier node
    bad_bytes = path.read_bytes()
    with caplog.at_level(logging.WARNING, logger="damocles.proofs.parent_cache"):
        sealed = seal_sector(P2K, sector, ticket, seed, tmp_path / "s", parent_cache_dir=tmp_path / "parents")
    assert sealed.comm_r == good.comm_r
    kept = [p for p in (tmp_path / "parents").iterdir() if ".corrupt-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == bad_bytes          # the bad file is kept, not overwritten
    assert path.read_bytes() != bad_bytes and check_file(P2K, path) is None
    assert any("is corrupt" in r.getMessage() and "sha256" in r.getMessage() and kept[0].name in r.getMessage()
               for r in caplog.records)


def test_an_out_of_range_index_is_named_not_a_traceback(tmp_path, caplog):
    path, _ = write_parent_cache(P2K, tmp_path)
    _poke(path, 17, 8, 1 << 30)
    problem = check_file(P2K, path)
    assert "node 17 has parent 1073741824, outside the graph's 64 nodes" in problem
    with caplog.at_level(logging.ERROR, logger="damocles.proofs.parent_cache"):
        (tmp_path / "cache").mkdir()
        generate_labels(P2K, bytes(32), tmp_path / "cache", tmp_path)      # PC1 on it: rebuilt first, no IndexError
    assert any("node 17 has parent" in r.getMessage() for r in caplog.records)
    assert check_file(P2K, path) is None


def test_a_truncated_cache_is_kept_and_rebuilt(tmp_path):
    path, _ = write_parent_cache(P2K, tmp_path)
    path.write_bytes(path.read_bytes()[:-4])
    assert check_file(P2K, path) == "3580 bytes, expected 3584"
    assert load_parents(P2K, tmp_path).shape == (64, 14)
    assert [p.stat().st_size for p in tmp_path.iterdir() if ".corrupt-" in p.name] == [3580]


def test_checked_once_per_process_and_again_when_the_file_changes(tmp_path, monkeypatch):
    path, _ = write_parent_cache(P2K, tmp_path)
    calls = []
    real = parent_cache.check_file
    monkeypatch.setattr(parent_cache, "check_file", lambda proof, p: calls.append(p) or real(proof, p))
    load_parents(P2K, tmp_path)
    load_parents(P2K, tmp_path)
    assert len(calls) == 1
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    load_parents(P2K, tmp_path)
    assert len(calls) == 2


def test_a_cache_missing_from_rust_fil_proofs_manifest_is_checked_against_the_generated_graph(tmp_path):
    synthetic = seal_proof(10)
    if cache_id(synthetic) in {cid for cid, _ in PARENT_CACHE_JSON.values()}:
        pytest.skip("the synthetic 2KiB graph is in the manifest")
    path, _ = write_parent_cache(synthetic, tmp_path)
    assert check_file(synthetic, path) is None
    _poke(path, 9, 2, 1)
    assert "sha256" in check_file(synthetic, path)
    load_parents(synthetic, tmp_path)
    assert check_file(synthetic, path) is None and len([p for p in tmp_path.iterdir() if ".corrupt-" in p.name]) == 1


def test_a_corrupt_cache_that_cannot_be_moved_aside_is_refused_naming_it(tmp_path, monkeypatch):
    path, _ = write_parent_cache(P2K, tmp_path)
    _poke(path, 20, 1, 3)

    def read_only(src, dst):
        raise PermissionError(13, "Permission denied", str(src))
    monkeypatch.setattr(parent_cache.os, "replace", read_only)
    with pytest.raises(ProofError, match=f"parent cache {path} is corrupt \\(sha256 .*\\) and cannot be rebuilt aside: "
                                         "Permission denied"):
        load_parents(P2K, tmp_path)
    assert check_file(P2K, path) is not None          # left as it was
