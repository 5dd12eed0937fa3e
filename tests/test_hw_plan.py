"""The planner against the captured machines: every plan is held against hand-worked cpusets,
NUMA nodes, GPU assignments and counts (the arithmetic is in the comments, from the numbers of
docs/hardware.md), and every planned config parses and passes the checker cleanly."""

import json
import tomllib

import pytest

from appliance.cli import main
from appliance.core.proof_types import sector_size
from appliance.hw.check import ALL_CPUS, check_post, check_worker
from appliance.hw.disks import Space
from appliance.hw.machine import discover
from appliance.hw.plan import PlanError, plan_worker
from appliance.hw.plan_post import plan_post
from appliance.post.config import load_post_config, parse_post_config
from appliance.worker.config import load_worker_config, parse_worker_config

from .hwmachines import epyc_dual, real_machine, xeon_dual

URL = "http://10.0.0.1:1789"
PERSIST = ("persist-1", "/persist")


@pytest.fixture(scope="module")
def machines(tmp_path_factory):
    d = tmp_path_factory.mktemp("machines")
    return {"h200": discover(real_machine("h200", d / "h200")), "epyc2": discover(real_machine("epyc2", d / "epyc2")),
            "epyc_dual": discover(epyc_dual(d / "epyc_dual")), "xeon_dual": discover(xeon_dual(d / "xeon_dual"))}


def room(path, free=4 * 10**12, fs=None):
    return Space(path, fs or path, path, free, free, False, "test")


def stage(plan, name):
    return [(e.cpus_text, e.numa, e.concurrent, e.envs.get("CUDA_VISIBLE_DEVICES"), e.locks) for e in plan.entries
            if e.stage == name]


def clean(plan, m, post=False):
    """The planned TOML parses and the checker finds nothing against the same machine."""
    raw = tomllib.loads(plan.toml())
    report = check_post(parse_post_config(raw, ALL_CPUS), m) if post else check_worker(parse_worker_config(raw, ALL_CPUS), m)
    assert report.findings == [], [str(f) for f in report.findings]
    return raw


def test_dual_epyc_32gib(machines):
    m = machines["epyc_dual"]
    p = plan_worker(m, sector_size("32GiB"), [m.space_for("/mnt/nvme0"), m.space_for("/mnt/nvme1")], PERSIST, URL)
    # per node: 32 cores in 8 L3 groups of 4; system ceil(8% of 32) = 3 cores, GPU 6 -> 9 cores -> the last 3 groups;
    # PC1 gets groups 0-4 (20 cores). Memory per node: 512 GiB - 25.6 (5% of 1 TiB, half) - 62.5 (C2 30 + 32 params
    # + 2 processes) = 423.9 GiB -> 7 PC1 at 56 GiB + 256 MiB
    assert stage(p, "pc1") == [("0-19", 0, 7, None, []), ("32-51", 1, 7, None, [])]
    gpu_entries = [("20-25", 0, 1, "0", ["gpu0"]), ("52-57", 1, 1, "1", ["gpu1"])]
    assert stage(p, "pc2") == gpu_entries and stage(p, "c2") == gpu_entries
    assert p.ext_locks == {"gpu0": 1, "gpu1": 1} and p.limits == {"pc1": 14, "pc2": 2, "c2": 2}
    # ceil(14 x 1.6) = 23 threads; each 7.68 TB NVMe holds 13 sectors of 520 GiB; alternating
    assert len(p.threads) == 23
    assert [t.location for t in p.threads[:3]] == ["/mnt/nvme0/thread-0", "/mnt/nvme1/thread-1", "/mnt/nvme0/thread-2"]
    assert sum(t.store == "/mnt/nvme0" for t in p.threads) == 12
    raw = clean(p, m)
    assert raw["sealing"]["allowed_sizes"] == ["32GiB"] and raw["attached"] == [{"name": "persist-1", "location": "/persist"}]
    assert raw["processors"]["pc2"][0]["envs"] == {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def test_dual_epyc_threads_held_by_space(machines):
    m = machines["epyc_dual"]
    p = plan_worker(m, sector_size("32GiB"), [m.space_for("/mnt/nvme0")], PERSIST, URL)
    # one NVMe: 13 sectors -> 13 threads, and PC1 held to 13 (taken from the bigger entry first)
    assert len(p.threads) == 13 and [e[2] for e in stage(p, "pc1")] == [6, 7] and p.limits["pc1"] == 13
    clean(p, m)


def test_dual_xeon_4_gpus(machines):
    m = machines["xeon_dual"]
    p = plan_worker(m, sector_size("32GiB"), [m.space_for("/data/seal")], ("nfs", "/persist"), URL)
    # per node: 32 cores (64 CPUs), one L3 group: system 3, GPUs 2 x 6 -> 15 cores from the end; PC1 the first 17
    # with their SMT siblings. Memory: 512 - 25.6 - 2 x 62.5 = 361.4 GiB -> 6 PC1
    assert stage(p, "pc1") == [("0-16,64-80", 0, 6, None, []), ("32-48,96-112", 1, 6, None, [])]
    gpus = [("17-22,81-86", 0, 1, "0", ["gpu0"]), ("23-28,87-92", 0, 1, "1", ["gpu1"]),
            ("49-54,113-118", 1, 1, "2", ["gpu2"]), ("55-60,119-124", 1, 1, "3", ["gpu3"])]
    assert stage(p, "pc2") == gpus and stage(p, "c2") == gpus
    assert p.limits == {"pc1": 12, "pc2": 4, "c2": 4}
    assert len(p.threads) == 20 and all(t.store == "/data/seal" for t in p.threads)   # ceil(12 x 1.6); 53 fit on 30 TB
    clean(p, m)


def test_h200_gpu_path(machines):
    """The GPU comes from the real NVML reading (nvml.json): planned for pc2 and c2 on cores inside
    its CPU affinity (0-15, node 0 derived from it since NVML and sysfs do not know the node)."""
    m = machines["h200"]
    gpu = m.gpus[0]
    p = plan_worker(m, sector_size("512MiB"), [room("/seal")], PERSIST, URL)
    # 16 cores, one L3: system 2 (ceil 8% of 16), GPU 6 -> PC1 0-7; 512MiB PC1 needs 768 MiB: the cores bind (8)
    assert stage(p, "pc1") == [("0-7", 0, 8, None, [])]
    assert stage(p, "pc2") == stage(p, "c2") == [("8-13", 0, 1, "0", ["gpu0"])]
    assert set(range(8, 14)) <= set(gpu.cpus) and len(p.threads) == 13            # ceil(8 x 1.6)
    clean(p, m)
    # 32GiB: 125.9 GiB - 6.3 system - 62.5 for the GPU's C2 = 57.1 GiB: one PC1 (56 GiB + 256 MiB)
    p = plan_worker(m, sector_size("32GiB"), [room("/seal")], PERSIST, URL)
    assert stage(p, "pc1") == [("0-7", 0, 1, None, [])] and len(p.threads) == 2
    assert any("room for 1 PC1" in line for line in p.explain)
    clean(p, m)


def test_epyc_2_cores(machines):
    m = machines["epyc2"]
    p = plan_worker(m, sector_size("2KiB"), [room("/seal")], PERSIST, URL)
    # 2 cores: none kept for the system (fewer than 4); no GPU: pc2/c2 take turns on core 1, PC1 on core 0
    assert stage(p, "pc1") == [("0", 0, 1, None, [])]
    assert stage(p, "pc2") == stage(p, "c2") == [("1", 0, 1, None, ["prove"])]
    assert p.ext_locks == {"prove": 1} and len(p.threads) == 2
    assert any("too few to keep one for the system" in line for line in p.explain)
    clean(p, m)
    with pytest.raises(PlanError, match=r"cannot run a 32GiB PC1: .*23.5 GiB"):
        plan_worker(m, sector_size("32GiB"), [room("/seal")], PERSIST, URL)
    with pytest.raises(PlanError, match=r"no room for one 512MiB sector \(it needs 3.6 GiB: /seal: 1.0 GiB free\)"):
        plan_worker(m, sector_size("512MiB"), [room("/seal", free=1 << 30)], PERSIST, URL)


def test_small_gpu_left_out(machines):
    m = machines["epyc_dual"]
    for g in m.gpus:
        g.memory_total = 8 << 30
    try:
        p = plan_worker(m, sector_size("32GiB"), [m.space_for("/mnt/nvme0")], PERSIST, URL)
        assert any("GPU 0 (NVIDIA GeForce RTX 3090, 8.0 GiB) is left out" in line for line in p.explain)
        assert all(e[3] is None for e in stage(p, "pc2")) and p.ext_locks == {"prove0": 1, "prove1": 1}
    finally:
        for g in m.gpus:
            g.memory_total = 24 << 30


def test_post_plans(machines):
    m = machines["xeon_dual"]
    p = plan_post(m, sector_size("32GiB"), [("nfs", "/persist")], URL)
    # per node 29 cores after the system's 3, shared by its 2 GPUs: 14 and 15
    assert stage(p, "window_post") == [("0-13,64-77", 0, 1, "0", []), ("14-28,78-92", 0, 1, "1", []),
                                        ("32-45,96-109", 1, 1, "2", []), ("46-60,110-124", 1, 1, "3", [])]
    assert p.concurrency == 4
    raw = clean(p, m, post=True)
    assert raw["prover"]["concurrency"] == 4 and raw["attached"] == [{"name": "nfs", "location": "/persist"}]
    p = plan_post(machines["h200"], sector_size("32GiB"), [PERSIST], URL)
    assert stage(p, "window_post") == [("0-13", 0, 1, "0", [])] and p.concurrency == 1
    clean(p, machines["h200"], post=True)
    p = plan_post(machines["epyc2"], sector_size("2KiB"), [PERSIST], URL)
    assert stage(p, "window_post") == [("0-1", 0, 1, None, [])]
    clean(p, machines["epyc2"], post=True)
    with pytest.raises(PlanError, match="distinct names"):
        plan_post(m, sector_size("32GiB"), [("a", "/x"), ("a", "/y")], URL)


def test_plan_and_check_on_this_machine(tmp_path, capsys):
    (tmp_path / "seal").mkdir()
    (tmp_path / "persist").mkdir()
    out = tmp_path / "worker.toml"
    args = ["plan", "--size", "2KiB", "--sealing-dir", str(tmp_path / "seal"), "--persist-dir", str(tmp_path / "persist"),
            "--manager", "/ip4/127.0.0.1/tcp/1789", "--out", str(out)]
    assert main(args + ["--explain"]) == 0
    said = capsys.readouterr().out
    assert "wrote " in said and "[[processors.pc1]]" in said and "sealing threads:" in said
    cfg = load_worker_config(out)
    assert cfg.manager_url == "http://127.0.0.1:1789/rpc/v0" and cfg.attached[0].name == "persist"
    assert all(t.location.parent == tmp_path / "seal" for t in cfg.threads)
    assert main(["worker", "check", "-c", str(out)]) == 0
    assert "0 error(s), 0 warning(s), checked against this machine" in capsys.readouterr().out
    assert main(args) == 2 and "exists: use --force" in capsys.readouterr().err
    assert main(args + ["--force", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["check"]["ok"] and d["config"] == out.read_text() and d["explain"]
    post = tmp_path / "post.toml"
    assert main(["plan", "--role", "post", "--size", "2KiB", "--persist-dir", str(tmp_path / "persist"),
                 "--persist-name", "persist-1", "--out", str(post)]) == 0
    assert load_post_config(post).attached[0].name == "persist-1"
    capsys.readouterr()
    assert main(["worker", "check", "-c", str(post), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "post"


def test_plan_cli_refusals(tmp_path, capsys):
    (tmp_path / "p").mkdir()
    assert main(["plan", "--persist-dir", str(tmp_path / "p")]) == 2
    assert "give at least one --sealing-dir" in capsys.readouterr().err
    assert main(["plan", "--sealing-dir", str(tmp_path / "nope"), "--persist-dir", str(tmp_path / "p")]) == 2
    assert "is not a directory (mount the disk and create it)" in capsys.readouterr().err
    assert main(["plan", "--sealing-dir", str(tmp_path), "--persist-dir", str(tmp_path / "q")]) == 2
    assert "damocles store file-init" in capsys.readouterr().err
    assert main(["plan", "--size", "3GiB", "--sealing-dir", str(tmp_path), "--persist-dir", str(tmp_path / "p")]) == 2
    assert "unknown sector size" in capsys.readouterr().err


def test_plan_cli_against_a_capture(machines, tmp_path, capsys):
    root = machines["h200"].root.capture
    (tmp_path / "seal").mkdir()
    out = tmp_path / "w.toml"
    assert main(["plan", "--root", str(root), "--size", "512MiB", "--sealing-dir", str(tmp_path / "seal"), "--persist-dir",
                 "/mnt/persist", "--out", str(out)]) == 0
    raw = tomllib.loads(out.read_text())
    assert raw["processors"]["pc2"][0]["cgroup"]["cpuset"] == "8-13"
    capsys.readouterr()
    assert main(["worker", "check", "-c", str(out), "--root", str(root)]) == 0
    assert "0 error(s), 0 warning(s)" in capsys.readouterr().out
    # the same file against the 2-CPU EPYC without a GPU: CPUs and the GPU are missing
    assert main(["worker", "check", "-c", str(out), "--root", str(machines["epyc2"].root.capture)]) == 1
    said = capsys.readouterr().out
    assert "CPU 2-7 do not exist" in said and "GPU 0 is not present" in said
