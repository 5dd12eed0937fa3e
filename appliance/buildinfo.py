"""When and from which commit this copy was built. build/build.sh writes `build_info.json`
(`build_time` in UTC, `commit` with `-dirty` when the tree had uncommitted changes, `build_glibc`:
the oldest glibc a host may have to run the binary) and the PyInstaller spec bundles it beside
this module. Running from a source checkout there is no such file: build time and glibc are
null and the commit is the checkout's HEAD where git can tell it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

_FILE = Path(__file__).with_name("build_info.json")


def build_info() -> dict:
    try:
        data = json.loads(_FILE.read_text())
        return {"build_time": data.get("build_time"), "commit": data.get("commit"), "build_glibc": data.get("build_glibc")}
    except (OSError, ValueError, AttributeError):
        pass
    commit = None
    try:
        p = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                           capture_output=True, text=True, timeout=5)
        commit = (p.stdout.strip() or None) if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"build_time": None, "commit": commit, "build_glibc": None}
