"""The manager's ext-prover (Damocles' `daemon run --ext-prover` with `ext-prover.cfg`): the
poster hands WindowPoSt and WinningPoSt to external processors speaking vc-processors
(`window_post` / `winning_post` tasks), instead of proving in-process.

ext-prover.cfg, as Damocles' damocles-manager/modules/config_processor.go reads it: `[[WdPost]]`
and `[[WinPost]]` tables of pkg/extproc ExtProcessorConfig {Bin, Args, Envs, Concurrent, Weight,
ReadyTimeoutSecs}; keys matched without case (as Go's TOML decoder), defaults Concurrent 1,
Weight 1, ReadyTimeoutSecs 5 (pkg/extproc/config.go). Without Bin, the processor is this
executable's own `processor <stage>`. A task goes to one of the entries with a free slot (all of
them when none is free), picked at random in proportion to Weight (pkg/extproc/extproc.go)."""

from __future__ import annotations

import base64
import binascii
import logging
import random
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from ..core.extproc import ProcessorError, ProtocolChild, child_env, own_command

log = logging.getLogger("damocles.manager.ext_prover")

EXT_PROVER_CFG = "ext-prover.cfg"
# the stage each ext-prover.cfg section serves
SECTIONS = {"wdpost": ("WdPost", "window_post"), "winpost": ("WinPost", "winning_post")}
# how long a proof may take before the child is given up (a WindowPoSt must land inside its deadline)
TASK_TIMEOUTS = {"window_post": 1200.0, "winning_post": 25.0}

DEFAULT_EXT_PROVER_CFG = """\
# Default config:
#[[WdPost]]
#Bin = "/path/to/custom/bin"
#Args = ["args1", "args2", "args3"]
#Concurrent = 1
#Weight = 1
#ReadyTimeoutSecs = 5
#[WdPost.Envs]
#ENV_KEY = "ENV_VAL"
#
#[[WinPost]]
#Bin = "/path/to/custom/bin"
#Args = ["args1", "args2", "args3"]
#Concurrent = 1
#Weight = 1
#ReadyTimeoutSecs = 5
#[WinPost.Envs]
#ENV_KEY = "ENV_VAL"
#
"""


class ExtProverConfigError(ValueError):
    pass


@dataclass
class ExtProverEntry:
    section: str
    index: int
    bin: str | None = None
    args: list[str] = field(default_factory=list)
    envs: dict[str, str] = field(default_factory=dict)
    concurrent: int = 1
    weight: int = 1
    ready_timeout_secs: int = 5

    @property
    def where(self) -> str:
        return f"[[{self.section}]] #{self.index}"


@dataclass
class ExtProverConfig:
    wdpost: list[ExtProverEntry] = field(default_factory=list)
    winpost: list[ExtProverEntry] = field(default_factory=list)


def write_default(home: Path) -> Path:
    """`manager init`: Damocles' ext-prover.cfg, every line commented out (an existing one is kept)."""
    path = Path(home) / EXT_PROVER_CFG
    if not path.exists():
        path.write_text(DEFAULT_EXT_PROVER_CFG)
    return path


def _uint(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ExtProverConfigError(f"{where}: {value!r} is not an unsigned integer")
    return value


def _entry(section: str, index: int, table, path: Path) -> ExtProverEntry:
    where = f"{path}: [[{section}]] #{index}"
    if not isinstance(table, dict):
        raise ExtProverConfigError(f"{where}: not a table")
    e = ExtProverEntry(section, index)
    for key, value in table.items():
        k = key.lower()
        w = f"{where}: {key}"
        if k == "bin":
            if not isinstance(value, str) or not value:
                raise ExtProverConfigError(f"{w}: {value!r} is not a program path")
            e.bin = value
        elif k == "args":
            if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
                raise ExtProverConfigError(f"{w}: {value!r} is not a list of strings")
            e.args = value
        elif k == "envs":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ExtProverConfigError(f"{w}: {value!r} is not a table of strings")
            e.envs = dict(value)
        elif k == "concurrent":
            e.concurrent = _uint(value, w)
        elif k == "weight":
            e.weight = _uint(value, w)
        elif k == "readytimeoutsecs":
            e.ready_timeout_secs = _uint(value, w)
        else:    # Go's decoder ignores it; say so rather than let a typo pass unseen
            log.warning("%s: unknown key, ignored (keys: Bin, Args, Envs, Concurrent, Weight, ReadyTimeoutSecs)", w)
    return e


def load_config(home: Path) -> ExtProverConfig:
    path = Path(home) / EXT_PROVER_CFG
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ExtProverConfigError(f"{path} not found: --ext-prover needs it (`damocles manager init` writes "
                                   f"Damocles' commented default)") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ExtProverConfigError(f"{path}: {exc}") from None
    cfg = ExtProverConfig()
    for key, value in data.items():
        known = SECTIONS.get(key.lower())
        if known is None:
            log.warning("%s: unknown section %s, ignored (sections: [[WdPost]], [[WinPost]])", path, key)
            continue
        if not isinstance(value, list):
            raise ExtProverConfigError(f"{path}: {key} must be an array of tables ([[{known[0]}]])")
        entries = [_entry(known[0], i, t, path) for i, t in enumerate(value)]
        getattr(cfg, key.lower()).extend(entries)
    return cfg


def read_proofs(out, stage: str, task: dict) -> tuple[list[bytes], list[int]]:
    """(proofs, faults) of a WindowPoStOutput {proofs, faults} / WinningPoStOutput {proofs}: proofs
    base64 strings, faults sectors of the task. The poster verifies the proofs themselves."""
    if not isinstance(out, dict):
        raise ProcessorError(f"{stage} output: not an object")
    raw = out.get("proofs")
    if not isinstance(raw, list):
        raise ProcessorError(f"{stage} output.proofs: {raw!r} is not an array")
    proofs = []
    for i, p in enumerate(raw):
        try:
            proofs.append(base64.b64decode(p, validate=True))
        except (TypeError, ValueError, binascii.Error):
            raise ProcessorError(f"{stage} output.proofs[{i}]: not a base64 string") from None
    asked = {r["sector_id"] for r in task["replicas"]}
    faults = (out.get("faults") or []) if stage == "window_post" else []
    if not isinstance(faults, list):
        raise ProcessorError(f"{stage} output.faults: {faults!r} is not an array")
    for i, n in enumerate(faults):
        if isinstance(n, bool) or n not in asked:
            raise ProcessorError(f"{stage} output.faults[{i}]: {n!r} is not a sector of the task")
    if not proofs:
        raise ProcessorError(f"{stage} output.proofs: empty")
    return proofs, sorted(faults)


class ExtProver:
    """The started ext-prover.cfg entries, by stage."""

    def __init__(self, cfg: ExtProverConfig, home: Path):
        self._pools: dict[str, list[tuple[ExtProverEntry, ProtocolChild]]] = {"window_post": [], "winning_post": []}
        self._lock = threading.Lock()
        try:
            for section, (name, stage) in SECTIONS.items():
                for e in getattr(cfg, section):
                    command = [e.bin, *e.args] if e.bin else own_command(stage)
                    child = ProtocolChild(stage, command, child_env(e.envs), e.concurrent or 1,
                                          float(e.ready_timeout_secs or 5), f"{home / EXT_PROVER_CFG} {e.where} ({command[0]})")
                    self._pools[stage].append((e, child))
                    log.info("ext-prover %s started: %s (pid %d)", e.where, " ".join(command), child.proc.pid)
        except ProcessorError:
            self.close()
            raise
        for stage, pool in self._pools.items():
            if not pool:
                log.error("--ext-prover: %s has no [[%s]] entry; %s is proven in-process", EXT_PROVER_CFG,
                          "WdPost" if stage == "window_post" else "WinPost", stage)

    def has(self, stage: str) -> bool:
        return bool(self._pools.get(stage))

    def _pick(self, stage: str) -> ProtocolChild:
        pool = self._pools[stage]
        with self._lock:
            free = [(e, c) for e, c in pool if c.in_flight < c.concurrent] or pool
            return random.choices([c for _, c in free], weights=[e.weight or 1 for e, _ in free])[0]

    def prove(self, stage: str, task: dict) -> tuple[list[bytes], list[int]]:
        child = self._pick(stage)
        return read_proofs(child.call(task, TASK_TIMEOUTS[stage]), stage, task)

    def close(self) -> None:
        for pool in self._pools.values():
            for _, child in pool:
                child.close()
