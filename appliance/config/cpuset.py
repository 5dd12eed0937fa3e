"""CPU lists as Linux and Damocles write them ("0-3,8,10-11"), parsed against the CPUs this
process may use, and written back in the short form."""

from __future__ import annotations

import os
import re

from . import ConfigError


ANY_CPU = frozenset(range(1 << 16))     # "do not check against this machine"


def parse_cpuset(text: str, where: str, available: set[int] | None = None) -> tuple[int, ...]:
    """"0-3,8,10-11" -> (0, 1, 2, 3, 8, 10, 11); refuses CPUs this machine does not have."""
    cpus: set[int] = set()
    if not isinstance(text, str) or not re.fullmatch(r"\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*", text):
        raise ConfigError(f"{where}: {text!r} is not a CPU list such as \"0-3,8\"")
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        lo, hi = int(a), int(b or a)
        if hi < lo:
            raise ConfigError(f"{where}: range {part.strip()!r} is backwards")
        cpus.update(range(lo, hi + 1))
    available = available if available is not None else set(os.sched_getaffinity(0))
    missing = sorted(cpus - available)
    if missing:
        raise ConfigError(f"{where}: CPU {missing[0]} does not exist or is not available here (available: "
                          f"{format_cpuset(sorted(available))})")
    return tuple(sorted(cpus))


def format_cpuset(cpus) -> str:
    out, run = [], []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
        else:
            if run:
                out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
            run = [c]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)
