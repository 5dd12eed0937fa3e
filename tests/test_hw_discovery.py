"""Hardware discovery against captured machines (the two real captures of tests/fixtures and
the two built in tests/hwmachines.py) and, briefly, against this machine."""

import json
import shutil

import pytest

from appliance.hw.gpu import _reason, _topo_affinity
from appliance.hw.machine import discover
from appliance.hw.sources import Root, parse_cpulist
from appliance.config.cpuset import format_cpuset

from .hwmachines import GiB, KiB, MiB, epyc_dual, fixture_archive, real_machine, xeon_dual


@pytest.fixture(scope="module")
def h200(tmp_path_factory):
    return real_machine("h200", tmp_path_factory.mktemp("h200"))


@pytest.fixture(scope="module")
def epyc2(tmp_path_factory):
    return real_machine("epyc2", tmp_path_factory.mktemp("epyc2"))


def test_h200_guest(h200):
    m = discover(h200)
    assert m.cpus == list(range(16)) and len(m.cores) == 16 and m.smt == 1
    assert m.identity.model == "Intel(R) Xeon(R) Processor" and m.identity.vendor == "GenuineIntel"
    assert m.identity.sha_extensions and "avx512f" in m.identity.flags
    assert m.topology.packages == {0: list(range(16))} and m.node_cpus == {0: list(range(16))}
    [g] = m.l3_groups
    assert g.cpus == tuple(range(16)) and g.size == 307200 * KiB and g.source == "L3"
    assert m.memory.total == 131981020 * KiB and m.memory.available == 131450224 * KiB and m.memory.swap_total == 0
    assert [(h.page_size, h.total) for h in m.memory.hugepages] == [(1 << 30, 0), (2 * MiB, 0)]
    # node0/meminfo lists 4.3 GiB of the guest's 126 GiB: the machine's total is planned with
    assert m.nodes[0].total == 4550128 * KiB and m.nodes[0].usable == m.memory.total
    assert any("NUMA node 0 reports 4.3 GiB" in n for n in m.notes)
    [gpu] = m.gpus
    assert (gpu.index, gpu.name, gpu.uuid) == (0, "NVIDIA H200", "GPU-9dddf02d-b254-0263-af47-fd764a75bd15")
    assert gpu.memory_total == 150754820096 and gpu.pci_bus_id == "00000000:00:06.0" and gpu.sysfs_bus_id == "0000:00:06.0"
    assert gpu.cpus == tuple(range(16))                       # NVML affinity word 65535
    assert (gpu.numa_node, gpu.numa_source) == (0, "cpu affinity")   # NVML: Not Supported; sysfs numa_node: -1
    assert gpu.compute_capability == (9, 0) and m.gpu_reading.driver == "580.159.04"
    assert [(d.name, d.size, d.rotational) for d in m.devices] == [("vda", 256 * GiB, True), ("vdb", 621744 * 512, True)]
    assert m.mounts == []                                     # no mount table in the capture


def test_h200_nvidia_smi_agrees_with_nvml(h200, tmp_path):
    """Without nvml.json the GPU comes from `nvidia-smi -q -x` and `topo -m`: the same GPU."""
    copy = tmp_path / "hwcap"
    shutil.copytree(h200, copy)
    (copy / "nvml.json").unlink()
    via_nvml, via_smi = discover(h200).gpus[0], discover(copy).gpus[0]
    for attr in ("index", "name", "uuid", "memory_total", "pci_bus_id", "cpus", "numa_node"):
        assert getattr(via_smi, attr) == getattr(via_nvml, attr), attr
    assert via_smi.source == "nvidia-smi -q -x" and via_smi.numa_source == "nvidia-smi topo"
    # and the planner lays the GPU out the same from either reading
    from appliance.core.proof_types import sector_size
    from appliance.hw.disks import Space
    from appliance.hw.plan import plan_worker
    plans = [plan_worker(discover(root), sector_size("512MiB"), [Space("/s", "s", "/s", 1 << 42, 1 << 42, False, "t")],
                         ("p", "/p"), "http://h:1") for root in (h200, copy)]
    assert [(e.stage, e.cpus, e.envs) for e in plans[0].entries] == [(e.stage, e.cpus, e.envs) for e in plans[1].entries]


def test_epyc_guest_without_gpu(epyc2):
    m = discover(epyc2)
    assert m.cpus == [0, 1] and [c.cpus for c in m.cores] == [(0,), (1,)]
    assert m.identity.model == "AMD EPYC" and m.identity.sha_extensions
    assert [g.cpus for g in m.l3_groups] == [(0, 1)] and m.l3_groups[0].size == 32 * MiB
    assert m.memory.total == 24684096 * KiB and m.nodes[0].usable == m.memory.total
    assert m.gpus == [] and m.gpu_reading.reason == "pynvml is not installed (pip install nvidia-ml-py)"
    assert [d.name for d in m.devices] == ["vda"]


def test_nvidia_device_without_driver_is_named(epyc2, tmp_path):
    copy = tmp_path / "hwcap"
    shutil.copytree(epyc2, copy)
    dev = copy / "root" / "sys" / "bus" / "pci" / "devices" / "0000:00:06.0"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x10de\n")
    (dev / "class").write_text("0x030200\n")
    m = discover(copy)
    assert m.gpus == [] and "NVIDIA PCI device(s) 0000:00:06.0 present without a working driver" in m.gpu_reading.reason


def test_dual_epyc(tmp_path):
    m = discover(epyc_dual(tmp_path))
    assert len(m.cpus) == 64 and len(m.cores) == 64 and m.smt == 1 and len(m.topology.packages) == 2
    assert m.node_cpus == {0: list(range(32)), 1: list(range(32, 64))}
    assert [format_cpuset(g.cpus) for g in m.l3_groups] == [f"{4 * i}-{4 * i + 3}" for i in range(16)]
    assert all(g.size == 16 * MiB for g in m.l3_groups)
    assert [m.nodes[n].usable for n in (0, 1)] == [512 * GiB, 512 * GiB] and not m.notes
    assert [(g.name, g.numa_node, g.numa_source, format_cpuset(g.cpus)) for g in m.gpus] == [
        ("NVIDIA GeForce RTX 3090", 0, "sysfs", "0-31"), ("NVIDIA GeForce RTX 3090", 1, "sysfs", "32-63")]
    assert [(x.mountpoint, x.block, x.rotational, x.free) for x in m.mounts] == [
        ("/", "sda", False, 400 * 10**9), ("/mnt/nvme0", "nvme0n1", False, 7_680_000_000_000),
        ("/mnt/nvme1", "nvme1n1", False, 7_680_000_000_000)]
    space = m.space_for("/mnt/nvme1/sealing/thread-3")
    assert (space.mountpoint, space.free, space.rotational, space.source) == (
        "/mnt/nvme1", 7_680_000_000_000, False, "captured df (/mnt/nvme1)")
    tree = "\n".join(m.tree())
    assert "L3 (#15 16MiB)" in tree and "PU #60 + PU #61 + PU #62 + PU #63" in tree and "NUMANode #1 (512.0 GiB)" in tree


def test_dual_xeon_with_smt(tmp_path):
    m = discover(xeon_dual(tmp_path))
    assert len(m.cpus) == 128 and len(m.cores) == 64 and m.smt == 2
    assert m.cores[0].cpus == (0, 64) and m.cores[63].cpus == (63, 127)
    assert [format_cpuset(m.node_cpus[n]) for n in (0, 1)] == ["0-31,64-95", "32-63,96-127"]
    assert [format_cpuset(g.cpus) for g in m.l3_groups] == ["0-31,64-95", "32-63,96-127"]
    assert [(g.index, g.numa_node, g.numa_source) for g in m.gpus] == [(0, 0, "nvml"), (1, 0, "nvml"), (2, 1, "nvml"),
                                                                        (3, 1, "nvml")]
    assert {x.mountpoint: (x.fstype, x.rotational) for x in m.mounts} == {
        "/": ("ext4", False), "/data": ("xfs", True), "/persist": ("nfs4", None)}
    d = m.to_dict()
    assert json.loads(json.dumps(d))["l3_groups"][1] == {"index": 1, "cpus": "32-63,96-127", "size": 48 * MiB,
                                                         "kind": "L3", "cores": 32, "nodes": [1]}


def test_this_machine():
    m = discover()
    assert m.root.live and m.cpus and m.cores and m.memory.total > 0 and m.memory.source == "psutil"
    assert set(m.cpus) <= set(range(1024)) and sum(len(c) for c in m.node_cpus.values()) == len(m.cpus)
    assert m.gpus or m.gpu_reading.reason          # no GPU: the reason is said
    assert any(x.mountpoint == "/" for x in m.mounts)


def test_roots(tmp_path, h200):
    archive = fixture_archive("hw-h200-kvm-16c.tgz")
    m = discover(str(archive))
    assert m.gpus[0].name == "NVIDIA H200" and str(archive) in m.root.label
    assert Root(h200 / "root").capture == h200 and Root(h200.parent).base == h200 / "root"
    with pytest.raises(ValueError, match="does not exist"):
        Root(tmp_path / "nope")
    with pytest.raises(ValueError, match="not a captured machine"):
        Root(tmp_path)


def test_parsers():
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11] and parse_cpulist("") == []
    assert _reason("pynvml.NVMLError_LibraryNotFound: NVML Shared Library Not Found").startswith("no NVIDIA driver")
    topo = "\t\x1b[4mGPU0\tGPU1\tCPU Affinity\tNUMA Affinity\tGPU NUMA ID\x1b[0m\nGPU0\t X \tSYS\t0-31,64-95\t0\t\tN/A\n" \
           "GPU1\tSYS\t X \t32-63,96-127\t1\t\tN/A\n"
    assert _topo_affinity(topo) == {0: (tuple(list(range(32)) + list(range(64, 96))), 0),
                                    1: (tuple(list(range(32, 64)) + list(range(96, 128))), 1)}


def test_hwinfo_cli(h200, capsys):
    from appliance.cli import main
    assert main(["hwinfo", "--root", str(h200), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["gpus"][0]["cpus"] == "0-15" and d["numa_nodes"][0]["memory_usable"] == 131981020 * KiB
    assert d["cpu"]["sha_extensions"] is True
    assert main(["hwinfo", "--root", str(h200)]) == 0
    out = capsys.readouterr().out
    assert "NUMANode #0 (125.9 GiB, reported 4.3 GiB)" in out and "GPU 0 NVIDIA H200" in out
