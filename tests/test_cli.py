"""The CLI as a user runs it: real processes, text and --json output, exit codes, error messages."""

import json

from .conftest import DAMOCLES_BIN, run_cli


def test_version_json():
    out = json.loads(run_cli("--version", "--json", check=True).stdout)
    assert out["frozen"] is (DAMOCLES_BIN is not None) and out["version"]
    assert {"build_time", "commit", "build_glibc"} <= set(out)     # null from source, except a checkout's commit
    assert out["build_time"] is not None or not out["frozen"]
    assert out["field_arithmetic"] == "gmpy2"   # the dependency is installed, Poseidon uses it
    # the tests' environment and the executable both carry the PostgreSQL driver with its libpq
    assert out["postgres_driver"].startswith("psycopg 3.") and "libpq " in out["postgres_driver"], out["postgres_driver"]


def test_util_seal_json_default_cc(tmp_path):
    p = run_cli("util", "seal", "--size", "2KiB", "--json", check=True)
    out = json.loads(p.stdout)
    assert out["comm_r_cid"] == "bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c"
    assert out["verified"] is True and out["proof_succinct"] is False and out["sector_dir"] is None
    assert set(out["stage_seconds"]) == {"add_piece", "tree_d", "pc1", "pc2", "c1", "c2", "verify"}


def test_util_seal_text_with_piece_then_post_and_verify(tmp_path):
    piece = tmp_path / "piece.bin"
    piece.write_bytes(b"hello filecoin" * 50)
    work = tmp_path / "work"
    for n in (1, 2):
        args = ["util", "seal", "--size", "2KiB", "--miner", "1000", "--sector", str(n), "--ticket", f"{n:02x}" * 32,
                "--workdir", str(work)]
        p = run_cli(*args, *(["--piece", str(piece)] if n == 1 else []), check=True)
        assert "verified:    yes" in p.stdout and "comm_r:      bagboea4b5abc" in p.stdout
    p = run_cli("util", "post", "--size", "2KiB", "--workdir", str(work), "--randomness", "11" * 31 + "01", "--json", check=True)
    out = json.loads(p.stdout)
    assert out["verified"] and out["proven"] == [1, 2] and out["faults"] == {}
    p = run_cli("util", "verify", str(work / "s-t01000-1"), "--full", "--json", check=True)
    assert json.loads(p.stdout)["full_check"]["ok"] is True
    # a flipped byte in the replica: PoSt reports the fault (exit 3), the full check names the file (exit 1)
    sealed = work / "s-t01000-2" / "sealed"
    data = bytearray(sealed.read_bytes())
    data[1000] ^= 4
    sealed.write_bytes(bytes(data))
    p = run_cli("util", "post", "--size", "2KiB", "--workdir", str(work), "--randomness", "11" * 31 + "01")
    assert p.returncode == 3 and "FAULT:       sector 2" in p.stdout
    p = run_cli("util", "verify", str(work / "s-t01000-2"), "--full")
    assert p.returncode == 1 and "sealed differs" in p.stdout
    # unseal the piece back
    out_file = tmp_path / "unsealed.bin"
    run_cli("util", "unseal", str(work / "s-t01000-1"), "--length", "889", "--output", str(out_file), check=True)
    assert out_file.read_bytes()[:700] == piece.read_bytes()


def test_util_commp(tmp_path):
    f = tmp_path / "zero.bin"
    f.write_bytes(bytes(1024))
    out = json.loads(run_cli("util", "commp", str(f), "--json", check=True).stdout)
    assert out == {"piece_cid": "baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy",
                   "commitment": "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833",
                   "padded_size": 2048, "payload_size": 1024, "unpadded_size": 2032}


def test_parent_cache_command(tmp_path):
    out = json.loads(run_cli("util", "parent-cache", "--proof", "StackedDrg2KiBV1_1", "--dir", str(tmp_path), "--json",
                             check=True).stdout)
    assert out["sha256"] == "840057702eea7652cf97e04306c30fe57174714d90de156a25eddd6075c25b97"
    assert out["path"].endswith("v28-sdr-parent-494d91dc80f2df5272c4b9e129bc7ade9405225993af9fe34e6542a39a47554b.cache")


def test_bad_input_messages(tmp_path):
    cases = [
        (["util", "seal", "--size", "3KiB"], "unknown sector size '3KiB'"),
        (["util", "seal", "--proof", "StackedDrg2KiBV7"], "unknown seal proof type"),
        (["util", "seal", "--size", "2KiB", "--proof", "StackedDrg8MiBV1_1"], "is for 8MiB sectors"),
        (["util", "seal", "--ticket", "abcd"], "is 2 bytes, expected 32"),
        (["util", "seal", "--seed", "zz" * 32], "is not hex"),
        (["util", "seal", "--seed", "00" * 32], "seed must not be all zeros"),
        (["util", "commp", str(tmp_path / "nope")], "No such file"),
        (["util", "post", "--workdir", str(tmp_path), "--randomness", "00" * 32], "no sealed 2KiB sectors"),
        (["util", "post", "--workdir", str(tmp_path), "--randomness", "ff" * 32], "no sealed 2KiB sectors"),
    ]
    for args, msg in cases:
        p = run_cli(*args)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert msg in p.stderr, (args, p.stderr)
    piece = tmp_path / "big.bin"
    piece.write_bytes(b"x" * 3000)
    p = run_cli("util", "seal", "--piece", str(piece), "--workdir", str(tmp_path / "w"))
    assert p.returncode == 2 and "more than the 2032" in p.stderr
    assert not any((tmp_path / "w").iterdir())


def test_bench_commands_small():
    out = json.loads(run_cli("bench", "pc1", "--size", "2KiB", "--json", check=True).stdout)
    assert out["labels"] == 128 and out["ratio_to_floor"] > 0 and out["pc1_peak_rss_bytes"] > 0
    out = json.loads(run_cli("bench", "pc2", "--size", "2KiB", "--procs", "2", "--json", check=True).stdout)
    assert out["poseidon_hashes"] == 64 + 2 * 9 and set(out["runs"]) == {"1", "2"}


def test_bench_rpc_small():
    out = json.loads(run_cli("bench", "rpc", "--clients", "2", "--seconds", "0.5", "--json", check=True).stdout)
    assert out["manager"]["errors"] == 0 and out["manager"]["requests"] > 0 and out["bare"]["requests"] > 0
    assert out["ratio_to_bare"] > 0
