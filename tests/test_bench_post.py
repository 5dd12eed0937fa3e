"""bench post: a real WindowPoSt job over a few laid-out 2KiB sectors, and refused arguments."""

import json

import pytest

from appliance.proofs.seal import find_sectors

from .conftest import run_cli


def test_bench_post_proves_verifies_and_reports(tmp_path):
    keep = tmp_path / "keep"
    p = run_cli("bench", "post", "--size", "2KiB", "--sectors", "5", "--keep", str(keep), "--json", check=True)
    r = json.loads(p.stdout)
    assert r["size"] == "2KiB" and r["proof_type"] == "StackedDrgWindow2KiBV1_1"
    assert r["sectors"] == 5 and r["challenges_per_sector"] == 10
    assert r["sectors_per_partition"] == 2 and r["partitions"] == 3
    assert r["verified"] is True and r["proof_bytes"] > 0
    assert r["generate_seconds"] > 0 and r["floor_seconds"] > 0 and r["verify_seconds"] > 0
    assert r["ratio_to_floor"] > 0
    assert r["ratio_to_floor"] == pytest.approx(r["generate_seconds"] / r["floor_seconds"], rel=0.05)
    assert r["sectors_per_second"] == pytest.approx(5 / r["generate_seconds"], rel=0.05)
    # 2KiB: tree_r_last keeps only its root, so a challenge reads the whole replica (2048 bytes,
    # once per sector however many challenges share it) and p_aux (64 bytes)
    assert r["floor_bytes_read"] == 5 * (2048 + 64)
    assert r["deadline_window_seconds"] == 1800
    assert r["window_fraction"] == pytest.approx(r["generate_seconds"] / 1800, abs=1e-5)
    assert r["layout"] == "hard links" and r["kept"] == str(keep)
    metas = find_sectors(keep / "sectors")
    assert [m.sector.number for m in metas] == [1, 2, 3, 4, 5]
    assert len({m.comm_r for m in metas}) == 1
    assert (metas[0].dir / "sealed").stat().st_nlink == 6   # the sealed-once original and 5 links

    p = run_cli("bench", "post", "--sectors", "2", "--keep", str(keep))
    assert p.returncode == 2 and "not an empty directory" in p.stderr


def test_bench_post_refuses_bad_arguments():
    p = run_cli("bench", "post", "--sectors", "0")
    assert p.returncode == 2 and "--sectors must be at least 1, got 0" in p.stderr
    p = run_cli("bench", "post", "--size", "3KiB", "--sectors", "1")
    assert p.returncode == 2 and "unknown sector size '3KiB'" in p.stderr
