"""Parsing of byte sizes ("32GiB", "512MiB", "2048") and durations ("90s", "1h30m", "250ms")."""

from __future__ import annotations

import re

_BYTE_UNITS = {
    "": 1, "b": 1,
    "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40, "pib": 1 << 50,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
}
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_bytes(text: str | int) -> int:
    """Parse a byte size. Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones
    (KB, MB, GB) powers of 1000, and the bare letters K/M/G/T mean the binary units as in
    Damocles' configs. Raises ValueError naming the text."""
    if isinstance(text, bool):
        raise ValueError(f"invalid byte size {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid byte size {text!r}: negative")
        return text
    m = _BYTES_RE.match(str(text))
    if not m:
        raise ValueError(f"invalid byte size {text!r}: expected a number and a unit such as 32GiB")
    number, unit = m.groups()
    factor = _BYTE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"invalid byte size {text!r}: unknown unit {unit!r}")
    value = float(number) * factor if "." in number else int(number) * factor
    if value != int(value):
        raise ValueError(f"invalid byte size {text!r}: not a whole number of bytes")
    return int(value)


def format_bytes(n: int) -> str:
    """The shortest exact binary form: 2048 -> '2KiB', 34359738368 -> '32GiB'."""
    for unit, factor in (("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return f"{n}B"


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")


def parse_duration(text: str | int | float) -> float:
    """Parse a duration in Go's notation as Damocles' configs use it ("90s", "1m30s", "500ms",
    "2h"); a bare number means seconds. Returns seconds. Raises ValueError naming the text."""
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError(f"invalid duration {text!r}: negative")
        return float(text)
    s = str(text).strip()
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        return float(s)
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 90s, 1m30s, 500ms")
    return total


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s else "")
