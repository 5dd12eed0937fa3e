"""Printing command results: `--json` prints one JSON document, otherwise aligned key: value lines."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(result: dict[str, Any], as_json: bool, text_lines: list[str] | None = None) -> None:
    if as_json:
        json.dump(result, sys.stdout, indent=2, sort_keys=False)
        sys.stdout.write("\n")
        return
    if text_lines is not None:
        for line in text_lines:
            print(line)
        return
    width = max((len(k) for k in result), default=0)
    for k, v in result.items():
        print(f"{k + ':':<{width + 1}} {v}")
