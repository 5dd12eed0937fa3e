"""`damocles worker check`: every finding with a config that triggers it and one that does not,
against the captured machines (tests/hwmachines.py); and the same check at worker start."""

import pytest

from appliance.hw.check import ALL_CPUS, check_post, check_worker
from appliance.hw.machine import discover
from appliance.post.config import parse_post_config
from appliance.worker.config import parse_worker_config
from appliance.worker.service import WorkerService

from .hwmachines import epyc_dual, real_machine, xeon_dual

URL = "http://127.0.0.1:9"
AWAY = "/nonexistent-damocles-hw-test"      # a path only the captured machine has: not looked at here


@pytest.fixture(scope="module")
def ms(tmp_path_factory):
    d = tmp_path_factory.mktemp("machines")
    return {"h200": discover(real_machine("h200", d / "h200")), "epyc2": discover(real_machine("epyc2", d / "epyc2")),
            "epyc_dual": discover(epyc_dual(d / "epyc_dual")), "xeon_dual": discover(xeon_dual(d / "xeon_dual"))}


def raw_config(tmp, processors=None, threads=2, sizes=("2KiB",), locks=None, limit=None, locations=None, attached=None,
               extra=None):
    procs = dict(processors or {})
    if locks:
        procs["ext_locks"] = locks
    if limit:
        procs["limitation"] = {"concurrent": limit}
    raw = {"sector_manager": {"rpc_client": {"addr": URL}},
           "sealing": {"allowed_sizes": list(sizes)} if sizes else {},
           "sealing_thread": [{"location": loc} for loc in (locations or [str(tmp / f"t{i}") for i in range(threads)])],
           "attached": attached or [{"name": "p", "location": str(tmp)}], "processors": procs}
    raw.update(extra or {})
    return raw


def check(m, tmp, **kw):
    return check_worker(parse_worker_config(raw_config(tmp, **kw), ALL_CPUS), m)


def said(report, level="error"):
    return "\n".join(str(f) for f in report.findings if f.level == level)


def pc(stage, cpuset=None, **kw):
    e = dict(kw)
    if cpuset is not None:
        e["cgroup"] = {"cpuset": cpuset}
    return {stage: [e]}


def test_cpus_that_do_not_exist(ms, tmp_path):
    r = check(ms["h200"], tmp_path, processors=pc("pc2", "0-99"))
    assert "[[processors.pc2]][0].cgroup.cpuset: CPU 16-99 do not exist (this machine has CPUs 0-15)" in said(r)
    assert not check(ms["h200"], tmp_path, processors=pc("pc2", "0-15")).findings


def test_numa_node_that_does_not_exist(ms, tmp_path):
    r = check(ms["h200"], tmp_path, processors=pc("pc2", "0-3", numa_preferred=3))
    assert "[[processors.pc2]][0].numa_preferred: NUMA node 3 does not exist (nodes: 0)" in said(r)
    assert not check(ms["h200"], tmp_path, processors=pc("pc2", "0-3", numa_preferred=0)).findings


def test_cpuset_spanning_numa_nodes(ms, tmp_path):
    r = check(ms["epyc_dual"], tmp_path, processors=pc("pc2", "28-35", numa_preferred=0))
    assert ("28-35 spans NUMA nodes 0, 1 (node 0: 28-31; node 1: 32-35) while numa_preferred = 0" in said(r)
            and "Once instance has previously been poisoned" in said(r))
    assert not check(ms["epyc_dual"], tmp_path, processors=pc("pc2", "28-35")).findings     # no preference: allowed
    assert not check(ms["epyc_dual"], tmp_path, processors=pc("pc2", "28-31", numa_preferred=0)).findings


def test_numa_preferred_off_the_cpuset(ms, tmp_path):
    r = check(ms["epyc_dual"], tmp_path, processors=pc("pc2", "32-35", numa_preferred=0))
    assert "numa_preferred: 0, but the cpuset 32-35 is on NUMA node 1" in said(r) and "set numa_preferred = 1" in said(r)
    assert not check(ms["epyc_dual"], tmp_path, processors=pc("pc2", "32-35", numa_preferred=1)).findings


def test_pc1_cutting_l3_groups(ms, tmp_path):
    r = check(ms["epyc_dual"], tmp_path, processors=pc("pc1", "0-5", numa_preferred=0))
    assert ("0-5 takes 2 of the 4 cores of L3 group #1 (CPUs 4-7; 6-7 left out) along with 1 other group(s): PC1's "
            "multicore SDR needs whole L3 groups") in said(r)
    for ok in ("0-7", "1-2", "0-19"):                   # whole groups, or part of one group only
        assert not check(ms["epyc_dual"], tmp_path, processors=pc("pc1", ok, numa_preferred=0)).findings, ok
    assert not check(ms["epyc_dual"], tmp_path, processors=pc("pc2", "0-5", numa_preferred=0)).findings   # pc1 only
    # with SMT a core counts whole with either of its CPUs; one L3 per socket: any part is aligned
    assert not check(ms["xeon_dual"], tmp_path, processors=pc("pc1", "0-16", numa_preferred=0),
                     extra={}).errors


def test_gpu_that_is_not_present(ms, tmp_path):
    def gpu(m, devices, cpuset="32-37", numa=None):
        e = {"envs": {"CUDA_VISIBLE_DEVICES": devices}, "cgroup": {"cpuset": cpuset}}
        if numa is not None:
            e["numa_preferred"] = numa
        return check(m, tmp_path, processors={"pc2": [e]})
    r = gpu(ms["epyc_dual"], "2")
    assert ("envs.CUDA_VISIBLE_DEVICES: GPU 2 is not present (GPUs here: 0 (NVIDIA GeForce RTX 3090), "
            "1 (NVIDIA GeForce RTX 3090))") in said(r)
    assert "GPU GPU-ffff is not present" in said(gpu(ms["epyc_dual"], "1,GPU-ffff"))
    assert not gpu(ms["epyc_dual"], "1").errors
    assert not gpu(ms["epyc_dual"], "GPU-aaaaaaaa-0000-0000-0000-000000000001").errors      # by UUID
    r = gpu(ms["epyc2"], "0", "0-1")
    assert "GPU 0 is not present (GPUs here: none: pynvml is not installed (pip install nvidia-ml-py))" in said(r)
    assert not gpu(ms["epyc2"], "", "0-1").findings and not gpu(ms["epyc2"], "-1", "0-1").findings


def test_gpu_far_from_its_cpus(ms, tmp_path):
    e = {"envs": {"CUDA_VISIBLE_DEVICES": "1"}, "cgroup": {"cpuset": "0-5"}}
    other = {"envs": {"CUDA_VISIBLE_DEVICES": "0"}, "cgroup": {"cpuset": "6-11"}}
    r = check(ms["epyc_dual"], tmp_path, processors={"pc2": [e, other]})
    assert "warning: [[processors.pc2]][0].envs.CUDA_VISIBLE_DEVICES: GPU 1 is close to CPUs 32-63 (NUMA node 1)" in str(r.findings[0])
    e["cgroup"]["cpuset"] = "32-37"
    assert not check(ms["epyc_dual"], tmp_path, processors={"pc2": [e, other]}).findings


def test_overlapping_cpusets(ms, tmp_path):
    procs = {**pc("pc1", "0-7", numa_preferred=0), **pc("pc2", "4-9")}
    r = check(ms["epyc_dual"], tmp_path, processors=procs)
    assert "warning: [[processors.pc2]][0].cgroup.cpuset: shares CPUs 4-7 with [[processors.pc1]][0]" in said(r, "warning")
    assert not check(ms["epyc_dual"], tmp_path, processors={**pc("pc1", "0-7", numa_preferred=0), **pc("pc2", "8-9")}).findings
    one = check(ms["epyc_dual"], tmp_path, processors=procs, threads=1)     # one thread: stages never run together
    assert not one.findings and any("one sealing thread" in n for n in one.notes)
    pair = {**pc("pc2", "8-13", locks=["l"]), **pc("c2", "8-13", locks=["l"])}
    assert not check(ms["epyc_dual"], tmp_path, processors=pair, locks={"l": 1}).findings   # they take turns
    assert "shares CPUs 8-13" in said(check(ms["epyc_dual"], tmp_path, processors=pair, locks={"l": 2}), "warning")


def test_gpu_shared_without_a_lock(ms, tmp_path):
    def procs(lock):
        extra = {"locks": ["g"]} if lock else {}
        return {"pc2": [{"envs": {"CUDA_VISIBLE_DEVICES": "0"}, "cgroup": {"cpuset": "20-22"}, **extra}],
                "c2": [{"envs": {"CUDA_VISIBLE_DEVICES": "0"}, "cgroup": {"cpuset": "23-25"}, **extra},
                       {"envs": {"CUDA_VISIBLE_DEVICES": "1"}, "cgroup": {"cpuset": "52-57"}}]}
    r = check(ms["epyc_dual"], tmp_path, processors=procs(False))
    assert ("[[processors.c2]][0].envs.CUDA_VISIBLE_DEVICES: GPU 0 is also given to [[processors.pc2]][0] and no ext_lock "
            "of 1 makes them take turns") in said(r, "warning")
    assert not check(ms["epyc_dual"], tmp_path, processors=procs(True), locks={"g": 1}).findings


def test_gpu_given_to_nobody(ms, tmp_path):
    def procs(devs):
        return {"c2": [{"envs": {"CUDA_VISIBLE_DEVICES": d}, "cgroup": {"cpuset": c}, "numa_preferred": n}
                       for d, c, n in devs]}
    r = check(ms["xeon_dual"], tmp_path, processors=procs([("0", "20", 0), ("1", "21", 0)]))
    assert [f.message for f in r.warnings] == [
        f"GPU {i} (NVIDIA A100-PCIE-40GB) is given to no processor (no CUDA_VISIBLE_DEVICES names it): it may sit idle"
        for i in (2, 3)]
    assert not check(ms["xeon_dual"], tmp_path, processors=procs([("0", "20", 0), ("1", "21", 0), ("2,3", "40", 1)])).findings


def test_sector_size_needed_and_config_warnings(ms, tmp_path):
    r = check(ms["epyc2"], tmp_path, sizes=())
    assert [str(f) for f in r.findings] == ['warning: [sealing].allowed_sizes: not set: the memory and store space checks '
                                            'need the sector size (set it, e.g. allowed_sizes = ["32GiB"])']
    r = check(ms["epyc2"], tmp_path, extra={"sealng": {}})
    assert [str(f) for f in r.findings] == ["warning: worker.toml: worker.toml: unknown key 'sealng' ignored"]


def test_sealing_location_that_cannot_be_made(ms, tmp_path):
    (tmp_path / "file").write_text("x")
    r = check(ms["epyc2"], tmp_path, locations=[str(tmp_path / "file" / "t0"), str(tmp_path / "file")])
    assert f"[[sealing_thread]][0].location: {tmp_path}/file/t0 cannot be created: {tmp_path}/file is not a directory" in said(r)
    assert f"[[sealing_thread]][1].location: {tmp_path}/file is not a directory" in said(r)
    assert not check(ms["epyc2"], tmp_path, locations=[str(tmp_path / "t0")]).findings       # created by the worker


def test_sealing_location_far_from_anything(tmp_path):
    m = discover()          # paths are looked at on the live machine (a capture's are not here)
    r = check(m, tmp_path, locations=[str(tmp_path / "disk" / "t0")])
    assert f"{tmp_path}/disk does not exist either; the worker will create them on" in said(r, "warning")
    assert "(is the disk meant for it mounted?)" in said(r, "warning")
    (tmp_path / "disk").mkdir()
    assert not check(m, tmp_path, locations=[str(tmp_path / "disk" / "t0")]).findings


def test_stores_too_small_for_their_threads(ms, tmp_path):
    m = ms["epyc_dual"]                       # /mnt/nvme0: 7.68 TB free in the capture; 520 GiB per 32GiB sector
    def at(n):
        return check(m, tmp_path, sizes=("32GiB",), locations=[f"/mnt/nvme0/t{i}" for i in range(n)])
    r = at(14)
    assert ("[[sealing_thread]][0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13].location: 14 thread(s) on /mnt/nvme0 need "
            "7280.0 GiB for 32GiB sectors (520.0 GiB each) but it has 7152.6 GiB free of 7152.6 GiB (captured df "
            "(/mnt/nvme0))") in said(r)
    assert not at(13).findings


def test_persist_store_missing_or_full(ms, tmp_path):
    r = check(discover(), tmp_path, attached=[{"name": "p", "location": str(tmp_path / "gone")}])
    assert f"[[attached]][0].location: {tmp_path}/gone (p) is not a directory" in said(r)
    m = ms["epyc_dual"]
    nvme0 = next(x for x in m.mounts if x.mountpoint == "/mnt/nvme0")
    attached = [{"name": "p", "location": "/mnt/nvme0/persist"}]
    nvme0.free = 10 << 30
    try:
        r = check(m, tmp_path, sizes=("32GiB",), attached=attached, locations=["/mnt/nvme1/t0"])
        assert [str(f) for f in r.findings] == ["warning: [[attached]][0].location: /mnt/nvme0/persist has 10.0 GiB free: "
                                                "not enough for one more 32GiB sector (32.6 GiB)"]
    finally:
        nvme0.free = 7_680_000_000_000
    assert not check(m, tmp_path, sizes=("32GiB",), attached=attached, locations=["/mnt/nvme1/t0"]).findings


def test_memory_for_the_pc1_concurrency(ms, tmp_path):
    m = ms["h200"]      # 125.9 GiB, 119.6 after the system's 6.3; a 32GiB PC1 needs 56 GiB + 256 MiB
    def at(n, **kw):
        return check(m, tmp_path, sizes=("32GiB",), locations=[f"{AWAY}/t{i}" for i in range(3)],
                     processors=pc("pc1", "0-7", numa_preferred=0, concurrent=n), **kw)
    r = at(3)
    assert ("[processors.limitation.concurrent].pc1: 3 32GiB PC1 at once (3 in the pc1 entries, 3 sealing threads) need "
            "168.8 GiB (56.0 GiB + 256 MiB each, Lotus storiface/resources.go); the machine has 125.9 GiB, 119.6 GiB after "
            "the system's 6.3 GiB: at most 2 fit") in said(r)
    assert not at(2).findings
    assert not at(3, limit={"pc1": 2}).findings          # the stage limit holds it to 2


def test_memory_of_a_numa_node(ms, tmp_path):
    m = ms["epyc_dual"]   # node 0: 512 GiB, 486.4 after its half of the system's 51.2
    def at(n):
        return check(m, tmp_path, sizes=("32GiB",), locations=[f"/mnt/nvme{i % 2}/t{i}" for i in range(n)],
                     processors=pc("pc1", "0-19", numa_preferred=0, concurrent=n))
    assert [str(f) for f in at(10).findings] == [
        "warning: [[processors.pc1]] numa_preferred = 0: 10 PC1 need 562.5 GiB, node 0 has 486.4 GiB after its share of "
        "the system's: memory will come from other nodes (slower)"]
    assert not at(8).findings


def test_memory_at_the_peak(ms, tmp_path):
    m = ms["h200"]
    def at(n):
        procs = {**pc("pc1", "0-7", numa_preferred=0, concurrent=n), **pc("pc2", "8-13", locks=["gpu0"]),
                 **pc("c2", "8-13", locks=["gpu0"])}
        for s in ("pc2", "c2"):
            procs[s][0]["envs"] = {"CUDA_VISIBLE_DEVICES": "0"}
        return check(m, tmp_path, sizes=("32GiB",), locations=[f"{AWAY}/t{i}" for i in range(2)], processors=procs,
                     locks={"gpu0": 1})
    assert "at the peak (PC1 x2 with every pc2/c2 entry busy) the stages need 174.8 GiB, 119.6 GiB is there" in said(at(2), "warning")
    assert not at(1).findings


def test_post_config(ms, tmp_path):
    def post(m, types, conc=1, entries=({"cgroup": {"cpuset": "0-1"}},)):
        raw = {"prover": {"concurrency": conc, "allowed_proof_types": types}, "sector_manager": {"rpc_client": {"addr": URL}},
               "attached": [{"name": "p", "location": str(tmp_path)}],
               "processors": {"window_post": [dict(e) for e in entries]}}
        return check_post(parse_post_config(raw, ALL_CPUS), m)
    r = post(ms["epyc2"], ["StackedDrgWindow32GiBV1_1"])
    assert "[prover].concurrency: 1 32GiB WindowPoSt jobs at once need 62.2 GiB" in said(r)
    assert not post(ms["epyc2"], ["StackedDrgWindow2KiBV1_1"]).findings
    r = post(ms["epyc2"], ["StackedDrgWindow2KiBV1_1"], 2, ({"cgroup": {"cpuset": "0-1"}}, {"cgroup": {"cpuset": "1"}}))
    assert "shares CPUs 1 with [[processors.window_post]][0]" in said(r, "warning")
    r = post(ms["epyc2"], None, 1, ({"cgroup": {"cpuset": "0-2"}},))
    assert "CPU 2 does not exist" in said(r) and any("memory is not checked" in n for n in r.notes)
    raw = {"prover": {}, "sector_manager": {"rpc_client": {"addr": URL}},
           "attached": [{"name": "p", "location": str(tmp_path / "gone")}]}
    r = check_post(parse_post_config(raw, ALL_CPUS), discover())
    assert f"[[attached]][0].location: {tmp_path}/gone (p) is not a directory" in said(r)


def test_worker_start_runs_the_check(tmp_path, monkeypatch):
    """WorkerService checks the machine before it starts anything: errors stop it, clearly."""
    raw = raw_config(tmp_path, processors=pc("pc1", "0", numa_preferred=9))
    with pytest.raises(ValueError, match=r"worker.toml does not fit this machine .*\n  error: \[\[processors.pc1\]\]\[0\]"
                                         r".numa_preferred: NUMA node 9 does not exist"):
        WorkerService(parse_worker_config(raw))
    # a config that fits passes the check and stops only at the manager, which is not there
    with pytest.raises(ValueError, match="cannot reach the manager"):
        WorkerService(parse_worker_config(raw_config(tmp_path, processors=pc("pc1", "0", numa_preferred=0))))
    monkeypatch.setenv("DAMOCLES_SKIP_HW_CHECK", "1")
    with pytest.raises(ValueError, match="cannot reach the manager"):
        WorkerService(parse_worker_config(raw))
