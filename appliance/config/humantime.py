"""Durations as Damocles' worker reads them: the humantime crate's notation ("1min", "5min",
"2h 30m", "30s", "1day", "100ms", "3 weeks"), one or more `<integer><unit>` spans, with or
without spaces between them. What this project accepted before stays accepted (Go's "1m30s",
a fraction such as "1.5h", a bare number or a TOML number meaning seconds); none of it means
something else in humantime, where it is an error."""

from __future__ import annotations

import re

# humantime's spellings; "M" (months) and "m" (minutes) differ only in case, as there
_UNITS = {
    **dict.fromkeys(("nanos", "nsec", "ns"), 1e-9),
    **dict.fromkeys(("usec", "us", "µs"), 1e-6),
    **dict.fromkeys(("millis", "msec", "ms"), 1e-3),
    **dict.fromkeys(("seconds", "second", "secs", "sec", "s"), 1.0),
    **dict.fromkeys(("minutes", "minute", "mins", "min", "m"), 60.0),
    **dict.fromkeys(("hours", "hour", "hrs", "hr", "h"), 3600.0),
    **dict.fromkeys(("days", "day", "d"), 86400.0),
    **dict.fromkeys(("weeks", "week", "w"), 7 * 86400.0),
    **dict.fromkeys(("months", "month", "M"), 2_630_016.0),      # 30.44 days
    **dict.fromkeys(("years", "year", "y"), 31_557_600.0),       # 365.25 days
}
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-zµ]*)")
_BARE = re.compile(r"\s*\d+(?:\.\d+)?\s*")
EXAMPLES = '"30s", "5min", "2h 30m", "1day", "100ms"'


def parse_humantime(value) -> float:
    """Seconds of a duration; ValueError saying what is wrong with `value` otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}: expected e.g. {EXAMPLES}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"invalid duration {value!r}: negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"invalid duration {value!r}: expected e.g. {EXAMPLES}")
    if not value.strip():
        raise ValueError(f"invalid duration {value!r}: empty (e.g. {EXAMPLES})")
    if _BARE.fullmatch(value):
        return float(value)                    # a bare number: seconds (accepted before)
    total, pos = 0.0, 0
    while pos < len(value) and value[pos:].strip():
        m = _SPAN.match(value, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"invalid duration {value!r}: expected a number at offset {pos} (e.g. {EXAMPLES})")
        number, unit = m.groups()
        if not unit:
            raise ValueError(f"invalid duration {value!r}: {number} has no time unit (e.g. {number}s or {number}ms)")
        if unit not in _UNITS:
            raise ValueError(f"invalid duration {value!r}: unknown time unit {unit!r} (units: ns, us, ms, s/sec, m/min, h/hr, "
                             "d/day, w/week, M/month, y/year and their plurals)")
        total += float(number) * _UNITS[unit]
        pos = m.end()
    return total
