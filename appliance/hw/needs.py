"""What one task needs, per sector size, with where each number comes from. The planner and the
checker use these and nothing else; docs/hardware.md lists them.

Memory: Lotus' resource table (lotus storage/sealer/storiface/resources.go, `ResourceTable`):
`MinMemory` ("what must be in RAM for decent perf") plus `BaseMinMemory` (shared once per
worker: the Groth16 parameters for C2 and WindowPoSt). Lotus schedules a task only where that
much physical memory is free; we plan the same way.

Processes: every processor process of the builtin engine is a Python interpreter with numpy:
about 40 MiB idle and ~150 MiB while working on a small sector (measured on this project's
worker); we count 256 MiB each, on top of the task's own need.

Sealing space: the files one sector holds in its sealing location at the peak (before it is
persisted), in Filecoin's layout as the builtin engine writes them: the staged data (1x), tree_d
(2x), the SDR layers (11x at 32/64GiB, 2x below), tree_c (8/7x), tree_r_last (small: rows
discarded), the sealed replica (1x), aux files. 32GiB: (11 + 5.25) x 32 GiB = 520 GiB; measured
7.15x for 8MiB. Persisting needs 1.02x the sector size (Damocles' reservation at 32GiB+)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.proof_types import SectorSize

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

LOTUS = "Lotus storiface/resources.go"


@dataclass(frozen=True)
class TaskNeed:
    min_memory: int
    base_memory: int    # shared per worker (parameters)
    source: str = LOTUS

    @property
    def memory(self) -> int:
        return self.min_memory + self.base_memory


# MinMemory, BaseMinMemory by sector size (bytes of the padded size)
_PC1 = {2 * KiB: (2 * KiB, 2 * KiB), 8 * MiB: (8 * MiB, 8 * MiB), 512 * MiB: (768 * MiB, 1 * MiB),
        32 * GiB: (56 * GiB, 10 * MiB), 64 * GiB: (112 * GiB, 10 * MiB)}
_PC2 = {2 * KiB: (2 * KiB, 2 * KiB), 8 * MiB: (8 * MiB, 8 * MiB), 512 * MiB: (1 * GiB, 1 * GiB),
        32 * GiB: (15 * GiB, 1 * GiB), 64 * GiB: (30 * GiB, 1 * GiB)}
_C2 = {2 * KiB: (2 * KiB, 2 * KiB), 8 * MiB: (8 * MiB, 8 * MiB), 512 * MiB: (1 * GiB, 10 * GiB),
       32 * GiB: (30 * GiB, 32 * GiB), 64 * GiB: (60 * GiB, 64 * GiB)}
_WDPOST = {2 * KiB: (2 * KiB, 2 * KiB), 8 * MiB: (8 * MiB, 8 * MiB), 512 * MiB: (1 * GiB, 10 * GiB),
           32 * GiB: (30 * GiB, 32 * GiB), 64 * GiB: (60 * GiB, 64 * GiB)}

PROCESS_OVERHEAD = 256 * MiB
# the OS, page cache for the sealing I/O and the worker process itself: our own number
SYSTEM_MEMORY_MIN, SYSTEM_MEMORY_SHARE = 4 * GiB, 0.05
# Lotus leaves 8% of the threads out of its parallel tasks (ParallelNum/ParallelDenom = 92/100,
# storiface/resources.go); we keep as many physical cores per NUMA node for the system and the
# worker, and none on machines of fewer than 4 cores, which cannot spare one
SYSTEM_CORE_SHARE, SYSTEM_CORES_FROM = 0.08, 4
# CPU threads a GPU PC2 or C2 uses beside the GPU: Lotus MaxParallelismGPU = 6
GPU_FEEDER_CORES = 6
# PC2 on a GPU wants at least 10 GiB of GPU memory at 32GiB (filecoin-docs sealing-pipeline)
GPU_MIN_MEMORY = {32 * GiB: 10 * GiB, 64 * GiB: 10 * GiB}
# a sealing thread holds its sector for tree_d + PC1 + PC2 + WaitSeed + C2, ~282 min of which
# PC1 is ~177 min (Damocles docs/en/12 table, EPYC 7642 + RTX 3080, 32GiB): 1.6 threads per
# PC1 slot keep PC1 busy while other sectors wait for PC2, the seed and C2
THREADS_PER_PC1 = 1.6
# without a GPU, PC2 and C2 share this part of a node's cores (our default; tune with bench)
CPU_PROVE_SHARE = 0.25


def pc1(size: SectorSize) -> TaskNeed:
    return TaskNeed(*_PC1[size.bytes])


def pc2(size: SectorSize) -> TaskNeed:
    return TaskNeed(*_PC2[size.bytes])


def c2(size: SectorSize) -> TaskNeed:
    return TaskNeed(*_C2[size.bytes])


def window_post(size: SectorSize) -> TaskNeed:
    return TaskNeed(*_WDPOST[size.bytes])


def prove_pair_memory(size: SectorSize) -> int:
    """A pc2 and a c2 entry that share one lock (one GPU, or one set of cores) run one at a time:
    the larger of the two, with its parameters."""
    return max(pc2(size).memory, c2(size).memory)


def system_memory(total: int) -> int:
    return max(SYSTEM_MEMORY_MIN, int(total * SYSTEM_MEMORY_SHARE))


def system_cores(node_cores: int, machine_cores: int) -> int:
    if machine_cores < SYSTEM_CORES_FROM:
        return 0
    return max(1, math.ceil(node_cores * SYSTEM_CORE_SHARE))


def sealing_space(size: SectorSize) -> int:
    """Bytes one sector holds in its sealing location at the peak."""
    return int((size.layers + 5.25) * size.bytes) + MiB


def persist_space(size: SectorSize) -> int:
    return int(size.bytes * 1.02) + MiB


def gpu_min_memory(size: SectorSize) -> int:
    return GPU_MIN_MEMORY.get(size.bytes, 0)


def pc1_slots_for_memory(available: int, size: SectorSize) -> int:
    per = pc1(size).min_memory + PROCESS_OVERHEAD
    return max(0, (available - pc1(size).base_memory) // per)


def gib(n: int) -> str:
    if n <= 0:
        return "0 GiB"
    if n >= GiB:
        return f"{n / GiB:.1f} GiB"
    if n >= MiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n / KiB:.0f} KiB"
