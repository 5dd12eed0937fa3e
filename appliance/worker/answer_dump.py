"""Malformed answers of external processors, kept for diagnosis. Damocles' producer (vc-processors
src/core/ext/producer.rs) writes a line it cannot parse to `ext-processor-err-resp-<pid>-<uuid>.json`
in the directory that `DUMP_ERR_RESP_<pid>` names (`damocles-worker worker enable-dump`), and
only logs 100 characters of it otherwise. Here the line is always written: to that directory when
the operator set it, else to the entry's dump directory (`[processors] dump_dir`, default
~/.damocles-worker/processor-dumps). Only the newest KEEP files are kept in a directory, so a
processor that prints garbage in a loop cannot fill the disk."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

log = logging.getLogger("damocles.worker.external")
DUMP_ENV_PREFIX = "DUMP_ERR_RESP_"
DEFAULT_DUMP_DIR = Path("~/.damocles-worker/processor-dumps")
KEEP = 20
PREFIX = "ext-processor-err-resp-"


def dump_dir_for(pid: int, default: Path | None) -> Path:
    where = os.environ.get(f"{DUMP_ENV_PREFIX}{pid}")
    return Path(where) if where else (default or DEFAULT_DUMP_DIR).expanduser()


def dump_answer(pid: int, line: str, default: Path | None = None, keep: int = KEEP) -> Path | None:
    """Write `line` for processor `pid`; its path, or None when it could not be written (logged)."""
    folder = dump_dir_for(pid, default)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{PREFIX}{pid}-{uuid.uuid4().hex}.json"
        path.write_text(line)
    except OSError as exc:
        log.error("processor pid %d: its malformed answer could not be dumped to %s: %s; it began %.100r",
                  pid, folder, exc, line)
        return None
    _prune(folder, keep)
    return path


def _prune(folder: Path, keep: int) -> None:
    try:
        dumps = sorted((p for p in folder.iterdir() if p.name.startswith(PREFIX) and p.name.endswith(".json")),
                       key=lambda p: p.stat().st_mtime_ns)
        for old in dumps[:-keep]:
            old.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("processor dumps in %s: old dumps could not be removed: %s", folder, exc)
