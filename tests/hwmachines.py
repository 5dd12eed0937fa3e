"""Captured machines for the hardware tests.

The two real captures are archives in tests/fixtures; they are extracted into a temporary
directory, never into the tree.
The two big machines are built here in the same layout (hwcap/root/{sys,proc} + nvml.json +
df.txt): a dual-socket 64-core EPYC with 8 L3 groups per socket and 2 GPUs (the machine of
Damocles' docs/en/12 hwinfo example, with 1 TiB), and a dual-socket Xeon with SMT, one L3 per
socket and 4 GPUs."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from .conftest import ROOT

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
REAL = {"h200": "hw-h200-kvm-16c.tgz", "epyc2": "hw-epyc-kvm-2c.tgz"}


def fixture_archive(name: str) -> Path:
    path = ROOT / "tests" / "fixtures" / name
    if not path.exists():      # the archives are committed: a missing one is a broken checkout
        pytest.fail(f"hardware fixture {name} not found in tests/fixtures")
    return path


def real_machine(key: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fixture_archive(REAL[key])) as tf:
        tf.extractall(dest, filter="data")
    return dest / "hwcap"


def _w(path: Path, text) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{text}\n")


def _cpulist(cpus) -> str:
    cpus, out, run = sorted(cpus), [], []
    for c in cpus:
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def build_machine(dest: Path, *, sockets: int, cores: int, smt: int, l3_per_socket: int, mem_per_node: int,
                  model: str, vendor: str, gpus: list[dict], disks: list[tuple[str, int, bool]],
                  mounts: list[tuple[str, str, str, int, int]], l3_size_kb: int) -> Path:
    """Linux numbering: physical cores socket by socket first, then their SMT siblings."""
    cap = dest / "hwcap"
    root = cap / "root"
    total = sockets * cores
    cpu = lambda s, c, t: t * total + s * cores + c          # noqa: E731
    sysd = root / "sys" / "devices" / "system"
    every = [cpu(s, c, t) for s in range(sockets) for c in range(cores) for t in range(smt)]
    for f in ("online", "present", "possible"):
        _w(sysd / "cpu" / f, _cpulist(every))
    per_l3 = cores // l3_per_socket
    for s in range(sockets):
        for c in range(cores):
            sib = [cpu(s, c, t) for t in range(smt)]
            l3 = [cpu(s, k, t) for k in range(c // per_l3 * per_l3, (c // per_l3 + 1) * per_l3) for t in range(smt)]
            for t in range(smt):
                d = sysd / "cpu" / f"cpu{cpu(s, c, t)}"
                # the files discovery reads (a real sysfs has more: L1/L2 caches, die and cluster ids ...)
                for f, v in (("physical_package_id", s), ("core_id", c), ("thread_siblings_list", _cpulist(sib))):
                    _w(d / "topology" / f, v)
                for idx, (level, ctype, shared, size, cid) in enumerate(
                        ((2, "Unified", sib, "512K", c), (3, "Unified", l3, f"{l3_size_kb}K", s * l3_per_socket + c // per_l3)),
                        start=2):
                    for f, v in (("level", level), ("type", ctype), ("shared_cpu_list", _cpulist(shared)), ("size", size),
                                 ("id", cid)):
                        _w(d / "cache" / f"index{idx}" / f, v)
    nodes = ",".join(str(s) for s in range(sockets))
    for f in ("online", "possible", "has_cpu", "has_memory"):
        _w(sysd / "node" / f, f"0-{sockets - 1}" if sockets > 1 else "0")
    for s in range(sockets):
        nd = sysd / "node" / f"node{s}"
        _w(nd / "cpulist", _cpulist([cpu(s, c, t) for c in range(cores) for t in range(smt)]))
        _w(nd / "meminfo", f"Node {s} MemTotal:       {mem_per_node // KiB} kB\nNode {s} MemFree:        "
                           f"{mem_per_node // KiB - 2 * 1024 * 1024} kB\nNode {s} HugePages_Total:     0")
        for hp in ("hugepages-2048kB", "hugepages-1048576kB"):
            _w(nd / "hugepages" / hp / "nr_hugepages", 0)
            _w(nd / "hugepages" / hp / "free_hugepages", 0)
    assert nodes
    for hp in ("hugepages-2048kB", "hugepages-1048576kB"):
        _w(root / "sys" / "kernel" / "mm" / "hugepages" / hp / "nr_hugepages", 0)
        _w(root / "sys" / "kernel" / "mm" / "hugepages" / hp / "free_hugepages", 0)
    memtotal = mem_per_node * sockets
    _w(root / "proc" / "meminfo", f"MemTotal:       {memtotal // KiB} kB\nMemFree:        {memtotal // KiB - 8 * 1024 * 1024} kB\n"
                                  f"MemAvailable:   {memtotal // KiB - 6 * 1024 * 1024} kB\nSwapTotal:             0 kB\n"
                                  "HugePages_Total:       0\nHugepagesize:       2048 kB")
    flags = "fpu vme de pse tsc msr pae avx2 sha_ni avx512f"
    blocks = [f"processor\t: {i}\nvendor_id\t: {vendor}\nmodel name\t: {model}\ncpu MHz\t\t: 2400.000\nflags\t\t: {flags}\n"
              for i in sorted(every)]
    _w(root / "proc" / "cpuinfo", "\n".join(blocks))
    for name, size, rot in disks:
        _w(root / "sys" / "block" / name / "size", size // 512)
        _w(root / "sys" / "block" / name / "queue" / "rotational", int(rot))
    _w(root / "proc" / "mounts", "\n".join(f"{dev} {mp} {fs} rw,relatime 0 0" for dev, mp, fs, _, _ in mounts))
    _w(cap / "df.txt", "Filesystem     1B-blocks    Used   Available Use% Mounted on\n" + "\n".join(
        f"{dev} {t} {t - f} {f} {100 * (t - f) // t}% {mp}" for dev, mp, _, t, f in mounts))
    devices = []
    for i, g in enumerate(gpus):
        node_cpus = [cpu(g["node"], c, t) for c in range(cores) for t in range(smt)]
        words = [0] * 4
        for c in node_cpus:
            words[c // 64] |= 1 << (c % 64)
        dev = {"index": i, "name": g["name"], "uuid": g["uuid"], "memory": {"total": g["memory"], "free": g["memory"], "used": 0},
               "pci_bus_id": g["bus"], "cpu_affinity_words": words, "compute_capability": [8, 0]}
        if g.get("nvml_numa"):
            dev["numa_node"] = g["node"]
        else:
            dev["numa_node_error"] = "Not Supported"
        devices.append(dev)
        pci = root / "sys" / "bus" / "pci" / "devices" / ("0000:" + g["bus"].split(":", 1)[1].lower())
        for f, v in (("vendor", "0x10de"), ("class", "0x030200"), ("local_cpulist", _cpulist(node_cpus)),
                     ("numa_node", g["node"] if g.get("sysfs_numa", True) else -1)):
            _w(pci / f, v)
    _w(cap / "nvml.json", json.dumps({"driver": "550.54.15", "cuda": 12040, "devices": devices}, indent=1))
    _w(cap / "nvml.err", "")
    return cap


def epyc_dual(dest: Path) -> Path:
    """2 x 32-core EPYC (no SMT), 8 L3 groups of 4 cores per socket, one NUMA node per socket
    with 512 GiB, one RTX 3090 per socket (NUMA node from sysfs: NVML says Not Supported), two
    7.68 TB NVMe and a system SSD."""
    return build_machine(
        dest, sockets=2, cores=32, smt=1, l3_per_socket=8, mem_per_node=512 * GiB, l3_size_kb=16384,
        model="AMD EPYC 7542 32-Core Processor", vendor="AuthenticAMD",
        gpus=[{"name": "NVIDIA GeForce RTX 3090", "uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000000", "memory": 24 * GiB,
               "bus": "00000000:41:00.0", "node": 0},
              {"name": "NVIDIA GeForce RTX 3090", "uuid": "GPU-aaaaaaaa-0000-0000-0000-000000000001", "memory": 24 * GiB,
               "bus": "00000000:C1:00.0", "node": 1}],
        disks=[("sda", 480 * 10**9, False), ("nvme0n1", 7_680_000_000_000, False), ("nvme1n1", 7_680_000_000_000, False)],
        mounts=[("/dev/sda2", "/", "ext4", 470 * 10**9, 400 * 10**9),
                ("/dev/nvme0n1", "/mnt/nvme0", "xfs", 7_680_000_000_000, 7_680_000_000_000),
                ("/dev/nvme1n1", "/mnt/nvme1", "xfs", 7_680_000_000_000, 7_680_000_000_000)])


def xeon_dual(dest: Path) -> Path:
    """2 x 32-core Xeon with SMT (128 CPUs), one L3 per socket, 512 GiB per node, four A100 40GB
    (two per socket, NUMA node from NVML), a 30 TB RAID of HDDs for sealing and an NFS persist."""
    return build_machine(
        dest, sockets=2, cores=32, smt=2, l3_per_socket=1, mem_per_node=512 * GiB, l3_size_kb=49152,
        model="Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", vendor="GenuineIntel",
        gpus=[{"name": "NVIDIA A100-PCIE-40GB", "uuid": f"GPU-bbbbbbbb-0000-0000-0000-00000000000{i}", "memory": 40 * GiB,
               "bus": bus, "node": node, "nvml_numa": True, "sysfs_numa": False}
              for i, (bus, node) in enumerate((("00000000:17:00.0", 0), ("00000000:31:00.0", 0),
                                               ("00000000:B1:00.0", 1), ("00000000:CA:00.0", 1)))],
        disks=[("sda", 960 * 10**9, False), ("md127", 30 * 10**12, True)],
        mounts=[("/dev/sda1", "/", "ext4", 900 * 10**9, 800 * 10**9),
                ("/dev/md127", "/data", "xfs", 30 * 10**12, 30 * 10**12),
                ("nas:/persist", "/persist", "nfs4", 500 * 10**12, 200 * 10**12)])
