"""Filecoin's compound tree shapes (8-8-0 for 32GiB, 8-8-2 for 64GiB) exercised end to end on
rust-fil-proofs' own small test sizes with those shapes (filecoin-proofs constants.rs:
16KiB = 8-8-0, 32KiB = 8-8-2): tree files split as rust-fil-proofs splits them, openings through
the sub and top levels, PoSt, and the parallel PC2 path giving the same files as one process."""

import filecmp

import pytest

from appliance.core.proof_types import ApiVersion, PoStProofType, SealProofType, SectorSize
from appliance.core.sector import SectorID
from appliance.proofs import ProofError, pc2
from appliance.proofs.post import PrivateSector, PublicSector, generate_window_post, verify_post
from appliance.proofs.seal import full_check, seal_sector

S16 = SectorSize("16KiB", 16 << 10, 2, 1, 2, (8, 8, 0), 2)
S32 = SectorSize("32KiB", 32 << 10, 2, 1, 2, (8, 8, 2), 2)
SEED = bytes([1]) * 32


def proof_of(size):
    return SealProofType(5, f"test-{size.name}", size, ApiVersion.V1_1_0, "interactive")


@pytest.mark.parametrize("size,files", [(S16, 8), (S32, 16)])
def test_compound_seal_prove_verify(size, files, tmp_path):
    proof = proof_of(size)
    r = seal_sector(proof, SectorID(1000, 1), bytes(32), SEED, tmp_path)
    cache = r.sector_dir / "cache"
    for i in range(files):
        # 64 leaves a base tree: tree_c keeps 64+8+1 nodes, tree_r_last (3 rows, 1 discarded) only the root
        assert (cache / f"sc-02-data-tree-c-{i}.dat").stat().st_size == 73 * 32
        assert (cache / f"sc-02-data-tree-r-last-{i}.dat").stat().st_size == 32
    assert not (cache / "sc-02-data-tree-c.dat").exists()
    assert full_check(r.sector_dir, proof=proof) == []
    wpost = PoStProofType(10, f"test-window-{size.name}", size, ApiVersion.V1_2_0, False)
    sector = PrivateSector(1, r.comm_r, cache, r.sector_dir / "sealed")
    res = generate_window_post(wpost, proof, [sector], bytes(range(31)) + b"\x01")
    assert not res.faults
    opening = res.partitions[0][0].openings[0]
    assert [len(level) for level in opening.path] == [7, 7, 7] + ([1] if size is S32 else [])
    verify_post(wpost, bytes(range(31)) + b"\x01", [PublicSector(1, r.comm_r)], res)
    opening.path[2][0] = bytes(32)   # a sibling at the sub level
    with pytest.raises(ProofError, match="does not reach comm_r_last"):
        verify_post(wpost, bytes(range(31)) + b"\x01", [PublicSector(1, r.comm_r)], res)


def test_parallel_pc2_writes_the_same_files(tmp_path, monkeypatch):
    proof = proof_of(S32)
    one = seal_sector(proof, SectorID(1000, 1), bytes(32), SEED, tmp_path / "one")
    monkeypatch.setattr(pc2, "_PARALLEL_MIN_NODES", 0)
    two = seal_sector(proof, SectorID(1000, 1), bytes(32), SEED, tmp_path / "two", pc2_procs=2)
    assert one.comm_r == two.comm_r
    for f in ["sealed"] + [f"cache/sc-02-data-tree-c-{i}.dat" for i in range(16)] + ["cache/p_aux"]:
        assert filecmp.cmp(one.sector_dir / f, two.sector_dir / f, shallow=False), f
