"""Parsing a request body within bounds. Python's json module recurses once per nesting level
and converts any number of digits, so a small body nested a thousand deep, or an integer of
thousands of digits, raises RecursionError or ValueError from inside the parser; NaN and
Infinity are not JSON at all but it accepts them. Here each of those is a clear refusal."""

from __future__ import annotations

import json
import math
import re

from . import INVALID_REQUEST, PARSE_ERROR, RPCError

MAX_DEPTH = 32          # Damocles' deepest request (ReportState) nests 3 levels
MAX_INT_DIGITS = 40     # a u64 has 20 digits

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]")
_PAIR = re.compile(rb"\[\]|\{\}")


def check_depth(body: bytes, limit: int = MAX_DEPTH) -> None:
    """Refuse brackets nested deeper than `limit`, without recursing: strip strings and all but
    the brackets, then remove innermost pairs, one level per pass, at most `limit` passes."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    for _ in range(limit):
        if not brackets:
            return
        brackets, removed = _PAIR.subn(b"", brackets)
        if not removed:
            raise RPCError(PARSE_ERROR, "parse error: brackets do not balance")
    if brackets:
        raise RPCError(INVALID_REQUEST, f"invalid request: JSON nested deeper than {limit} levels")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise RPCError(INVALID_REQUEST, f"invalid request: an integer of {len(text.lstrip('-'))} digits "
                                        f"(at most {MAX_INT_DIGITS})")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise RPCError(INVALID_REQUEST, f"invalid request: the number {text[:40]} is not finite")
    return value


def _constant(name: str):
    raise RPCError(INVALID_REQUEST, f"invalid request: {name} is not a JSON number")


def parse_body(body: bytes):
    """The parsed JSON of a request body, or RPCError: -32700 for what is not UTF-8 JSON, -32600
    for JSON beyond the bounds (nesting, digits, non-finite numbers)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RPCError(PARSE_ERROR, f"parse error: the body is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    check_depth(body)
    try:
        return json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise RPCError(PARSE_ERROR, f"parse error: {exc}") from None


def lone_surrogate(value, field: str) -> str | None:
    """The path of the first string (or object key) in `value` holding a lone UTF-16 surrogate
    (`"\\ud800"` parses, but no UTF-8 encoder or database takes it), else None."""
    if isinstance(value, str):
        return None if not _has_surrogate(value) else field
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = lone_surrogate(item, f"{field}[{i}]")
            if found:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if _has_surrogate(key):
                return f"{field} (a key)"
            found = lone_surrogate(item, f"{field}.{key}")
            if found:
                return found
    return None


def beyond_i64(value, field: str) -> str | None:
    """The path of the first integer in `value` that no signed 64-bit column holds, else None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return field if not -(1 << 63) <= value < (1 << 63) else None
    items = enumerate(value) if isinstance(value, list) else value.items() if isinstance(value, dict) else ()
    for key, item in items:
        found = beyond_i64(item, f"{field}[{key}]" if isinstance(value, list) else f"{field}.{key}")
        if found:
            return found
    return None


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def error_answer(rid, code: int, message: str, data=None) -> dict:
    err = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": err}


def dumps(answer) -> bytes:
    """An answer as strict JSON (never NaN or Infinity, which JSON clients cannot read)."""
    return json.dumps(answer, allow_nan=False).encode()
