"""Logging for the long-running roles: one line per event. `--log-format text` (default) is
`time level logger message`; `--log-format json` is one JSON object a line with `ts`, `level`,
`logger`, `msg` and, where the event is about a sector, `sector`, `state` (and `prev`, `event`,
`worker`, `sealing_thread`, `failure_level`) as separate fields, for log shippers."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FIELDS = ("sector", "state", "prev", "event", "worker", "sealing_thread", "failure_level")   # "thread" is taken by LogRecord


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for k in FIELDS:
            v = record.__dict__.get(k)
            if v is not None:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def add_argument(parser) -> None:
    parser.add_argument("--log-format", choices=FORMATS, default="text",
                        help="text (default) or json: one JSON object per line, with sector and state as fields")


class _CurrentStderr(logging.StreamHandler):
    """Writes to sys.stderr as it is at each record, not as it was at set-up: a role set up while
    stderr was redirected (a test's capture, since closed) still logs where stderr is now."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:       # StreamHandler sets it: the property decides
        pass


def setup(fmt: str = "text", level: int = logging.INFO, stream=None) -> None:
    """Configure the root logger once for a role (replaces what was there)."""
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderr()
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
