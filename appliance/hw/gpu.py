"""NVIDIA GPUs: name, UUID, memory, PCI bus id, the CPUs close to it (affinity) and its NUMA
node where known. Live: NVML through pynvml (nvidia-ml-py). Captured: the NVML reading saved
as `nvml.json` (its failure as `nvml.err`), else `nvidia-smi -q -x` output (`nvidia_smi_q.xml`)
with `nvidia-smi topo -m` (`nvidia_topo.txt`) for the affinity. Either way the PCI device's
sysfs entry (<root>/sys/bus/pci/devices/<bus id>/{local_cpulist,numa_node}) fills in what NVML
does not know. No driver (or no pynvml) means no GPUs, and `reason` says why."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from .sources import Root, parse_cpulist, read, read_int


@dataclass
class GPU:
    index: int                       # NVML index (PCI bus order; CUDA's with CUDA_DEVICE_ORDER=PCI_BUS_ID)
    name: str
    uuid: str
    memory_total: int                # bytes
    pci_bus_id: str                  # NVML form: 00000000:00:06.0
    cpus: tuple[int, ...] = ()       # CPU affinity: the CPUs close to the GPU
    numa_node: int | None = None
    numa_source: str = ""            # "nvml", "sysfs", "cpu affinity", "" (unknown)
    compute_capability: tuple[int, int] | None = None
    source: str = ""

    @property
    def sysfs_bus_id(self) -> str:
        """00000000:00:06.0 -> 0000:00:06.0 (sysfs keeps a 4-digit domain)."""
        dom, _, rest = self.pci_bus_id.lower().partition(":")
        return f"{dom[-4:]}:{rest}"


@dataclass
class GPUReading:
    gpus: list[GPU]
    reason: str = ""                 # why there are none (or why some data is missing)
    driver: str = ""
    source: str = ""


def gpus(root: Root, node_cpus: dict[int, list[int]]) -> GPUReading:
    if root.live:
        reading = _live_nvml()
    elif (p := root.captured("nvml.json")) and (read(p) or "").strip():
        reading = _from_nvml_json(json.loads(read(p)), str(p))
    elif (p := root.captured("nvidia_smi_q.xml")) and (read(p) or "").lstrip().startswith("<"):
        reading = _from_smi_xml(read(p), root.captured("nvidia_topo.txt"), str(p))
    else:
        err = root.captured("nvml.err")
        last = (read(err) or "").strip().splitlines()[-1:] if err else []
        reading = GPUReading([], _reason(last[0]) if last else "no NVML reading was captured", source=str(err or ""))
    for g in reading.gpus:
        dev = root.sys("bus", "pci", "devices", g.sysfs_bus_id)
        if not g.cpus:
            g.cpus = tuple(parse_cpulist(read(dev / "local_cpulist")))
        if g.numa_node is None:
            n = read_int(dev / "numa_node")
            if n is not None and n >= 0:
                g.numa_node, g.numa_source = n, "sysfs"
        if g.numa_node is None and g.cpus:
            near = [n for n, cpus in node_cpus.items() if set(g.cpus) & set(cpus)]
            if len(near) == 1:
                g.numa_node, g.numa_source = near[0], "cpu affinity"
    if not reading.gpus:
        orphans = nvidia_pci_devices(root)
        if orphans:
            reading.reason += f"; NVIDIA PCI device(s) {', '.join(orphans)} present without a working driver"
    return reading


def nvidia_pci_devices(root: Root) -> list[str]:
    base = root.sys("bus", "pci", "devices")
    out = []
    try:
        names = sorted(p.name for p in base.iterdir())
    except OSError:
        return out
    for name in names:
        if read(base / name / "vendor") == "0x10de" and (read(base / name / "class") or "").startswith("0x03"):
            out.append(name)
    return out


def _reason(text: str) -> str:
    if "No module named 'pynvml'" in text or "No module named pynvml" in text:
        return "pynvml is not installed (pip install nvidia-ml-py)"
    if "LibraryNotFound" in text or "Shared Library Not Found" in text:
        return "no NVIDIA driver (the NVML library libnvidia-ml.so was not found)"
    if "DriverNotLoaded" in text or "Driver Not Loaded" in text:
        return "the NVIDIA driver is not loaded"
    return f"NVML failed: {text}"


def _affinity(words) -> tuple[int, ...]:
    """nvmlDeviceGetCpuAffinity's words: 64-bit masks on Linux, CPU 0 in bit 0 of word 0."""
    return tuple(w * 64 + b for w, word in enumerate(words or []) for b in range(64) if int(word) >> b & 1)


def _live_nvml() -> GPUReading:
    try:
        import pynvml
    except ImportError:
        return GPUReading([], "pynvml is not installed (pip install nvidia-ml-py)")
    try:
        pynvml.nvmlInit()
    except Exception as exc:       # noqa: BLE001 - NVMLError_* on machines without a driver
        return GPUReading([], _reason(f"{type(exc).__name__}: {exc}"), source="nvml")
    try:
        driver = _s(pynvml.nvmlSystemGetDriverVersion())
        out = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            g = GPU(i, _s(pynvml.nvmlDeviceGetName(h)), _s(pynvml.nvmlDeviceGetUUID(h)),
                    int(pynvml.nvmlDeviceGetMemoryInfo(h).total), _s(pynvml.nvmlDeviceGetPciInfo(h).busId), source="nvml")
            try:
                g.cpus = _affinity(pynvml.nvmlDeviceGetCpuAffinity(h, 16))   # 16 words: up to 1024 CPUs
            except Exception:      # noqa: BLE001 - filled from sysfs
                pass
            try:
                g.numa_node, g.numa_source = int(pynvml.nvmlDeviceGetNumaNodeId(h)), "nvml"
            except Exception:      # noqa: BLE001 - "Not Supported" on many boards and in VMs
                pass
            try:
                g.compute_capability = tuple(pynvml.nvmlDeviceGetCudaComputeCapability(h))
            except Exception:      # noqa: BLE001
                pass
            out.append(g)
        return GPUReading(out, driver=driver, source="nvml")
    except Exception as exc:       # noqa: BLE001
        return GPUReading([], _reason(f"{type(exc).__name__}: {exc}"), source="nvml")
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:          # noqa: BLE001
            pass


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _from_nvml_json(data: dict, source: str) -> GPUReading:
    out = []
    for d in data.get("devices", []):
        g = GPU(int(d["index"]), d["name"], d["uuid"], int(d["memory"]["total"]), d["pci_bus_id"],
                _affinity(d.get("cpu_affinity_words")), source="nvml.json")
        if isinstance(d.get("numa_node"), int) and d["numa_node"] >= 0:
            g.numa_node, g.numa_source = d["numa_node"], "nvml"
        if d.get("compute_capability"):
            g.compute_capability = tuple(d["compute_capability"])
        out.append(g)
    return GPUReading(out, driver=str(data.get("driver", "")), source=source)


def _from_smi_xml(text: str, topo_path, source: str) -> GPUReading:
    root = ET.fromstring(text)
    affinity = _topo_affinity(read(topo_path) if topo_path else "")
    out = []
    for i, el in enumerate(root.findall("gpu")):
        mem = el.findtext("fb_memory_usage/total") or "0 MiB"
        m = re.match(r"(\d+)\s*MiB", mem)
        g = GPU(int(el.findtext("minor_number") or i) if (el.findtext("minor_number") or "").isdigit() else i,
                el.findtext("product_name") or "", el.findtext("uuid") or "", int(m.group(1)) << 20 if m else 0,
                el.findtext("pci/pci_bus_id") or el.get("id", ""), source="nvidia-smi -q -x")
        g.index = i                # nvidia-smi lists GPUs in NVML index order
        cpus, node = affinity.get(i, ((), None))
        g.cpus = cpus
        if node is not None:
            g.numa_node, g.numa_source = node, "nvidia-smi topo"
        out.append(g)
    return GPUReading(out, driver=root.findtext("driver_version") or "", source=source)


def _topo_affinity(text: str) -> dict[int, tuple[tuple[int, ...], int | None]]:
    """`nvidia-smi topo -m`: per GPU row, the "CPU Affinity" and "NUMA Affinity" columns."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text or "")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return {}
    header = [h for h in re.split(r"\t+", lines[0].strip()) if h]
    out = {}
    for line in lines[1:]:
        m = re.match(r"GPU(\d+)\s", line)
        if not m:
            continue
        cells = [c.strip() for c in line.split("\t")][1:]
        row = dict(zip(header, cells))
        cpus = tuple(parse_cpulist(row.get("CPU Affinity", ""))) if re.fullmatch(r"[\d,\-]+", row.get("CPU Affinity", "")) else ()
        node = row.get("NUMA Affinity", "")
        out[int(m.group(1))] = (cpus, int(node) if node.isdigit() else None)
    return out
