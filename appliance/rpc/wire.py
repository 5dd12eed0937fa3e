"""Damocles' wire encoding, and strict parameter converters that name the offending field:
SectorID {"Miner", "Number"}, 32-byte values as arrays of 32 ints, byte strings base64,
CIDs {"/": "..."}, PascalCase struct keys."""

from __future__ import annotations

import base64
import binascii
import logging
import threading
from typing import Any, Callable

from . import INVALID_PARAMS, RPCError

Converter = Callable[[Any, str], Any]
log = logging.getLogger("damocles.rpc")
_unknown_logged: set[tuple[str, str]] = set()      # (field, key) already logged; bounded below
_unknown_lock = threading.Lock()
UNKNOWN_LOG_LIMIT = 1024
MAX_U64 = (1 << 64) - 1
I64 = (-(1 << 63), (1 << 63) - 1)


def bad(field: str, message: str) -> RPCError:
    return RPCError(INVALID_PARAMS, f"{field}: {message}")


def u64(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_U64:
        raise bad(field, f"expected an unsigned 64-bit integer, got {v!r}")
    return v


def stored_u64(v: Any, field: str) -> int:
    """An unsigned integer the manager keeps in a signed 64-bit column (SQLite): actor IDs and
    sector numbers (Filecoin's largest sector number is 2^63-1)."""
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= I64[1]:
        raise bad(field, f"expected an unsigned integer below 2^63, got {v!r}")
    return v


def i64(v: Any, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not I64[0] <= v <= I64[1]:
        raise bad(field, f"expected a signed 64-bit integer, got {v!r}")
    return v


def string(v: Any, field: str) -> str:
    if not isinstance(v, str):
        raise bad(field, f"expected a string, got {v!r}")
    return v


def boolean(v: Any, field: str) -> bool:
    if not isinstance(v, bool):
        raise bad(field, f"expected true or false, got {v!r}")
    return v


def bytes32(v: Any, field: str) -> bytes:
    if not isinstance(v, list) or len(v) != 32 or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= 255 for x in v):
        raise bad(field, "expected an array of 32 integers 0..255")
    return bytes(v)


def b64(v: Any, field: str) -> bytes:
    if not isinstance(v, str):
        raise bad(field, f"expected base64 bytes, got {v!r}")
    try:
        return base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        raise bad(field, "is not valid base64") from None


def cid(v: Any, field: str) -> str:
    if not isinstance(v, dict) or set(v) != {"/"} or not isinstance(v["/"], str):
        raise bad(field, 'expected a CID {"/": "..."}')
    return v["/"]


def optional(conv: Converter) -> Converter:
    return lambda v, field: None if v is None else conv(v, field)


def list_of(conv: Converter) -> Converter:
    def convert(v: Any, field: str) -> list:
        if not isinstance(v, list):
            raise bad(field, f"expected an array, got {v!r}")
        return [conv(x, f"{field}[{i}]") for i, x in enumerate(v)]
    return convert


def _ignore_unknown(field: str, keys: set) -> None:
    """Go's encoding/json and serde skip fields a struct does not have (a newer peer may send
    more): so do we, logging each (field, key) once so that a misspelt key is still seen."""
    with _unknown_lock:
        if len(_unknown_logged) >= UNKNOWN_LOG_LIMIT:      # a peer sending endless new keys: quiet
            return
        fresh = sorted(str(k) for k in keys if (field, k) not in _unknown_logged)
        _unknown_logged.update((field, k) for k in keys)
    for k in fresh:
        log.warning("%s: ignoring unknown field %r", field, str(k)[:64])


def struct(spec: dict[str, Converter], optional_keys: tuple[str, ...] = ()) -> Converter:
    """An object with these keys (those in optional_keys may be missing or null). As Go's
    encoding/json decodes a struct: a key matches its field exactly, else without case; other
    keys are ignored (logged once), as serde does too."""
    def convert(v: Any, field: str) -> dict:
        if not isinstance(v, dict):
            raise bad(field, f"expected an object, got {v!r}")
        extra = [k for k in v if k not in spec]
        folded: dict[str, str] = {}
        for k in extra:
            folded.setdefault(k.lower(), k)
        out, used = {}, set()
        for key, conv in spec.items():
            name = key if key in v else folded.get(key.lower())
            if name is None:
                if key in optional_keys:
                    out[key] = None
                    continue
                raise bad(f"{field}.{key}", "is missing")
            used.add(name)
            out[key] = conv(v[name], f"{field}.{key}")
        ignored = set(extra) - used
        if ignored:
            _ignore_unknown(field, ignored)
        return out
    return convert


sector_id = struct({"Miner": stored_u64, "Number": stored_u64})


def encode_bytes32(b: bytes) -> list[int]:
    return list(b)


def encode_b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def encode_cid(c: str) -> dict:
    return {"/": c}
