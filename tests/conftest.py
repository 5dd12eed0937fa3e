import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True, scope="session")
def _isolated_parent_cache(tmp_path_factory):
    """Tests never write to the host's /var/tmp/filecoin-parents."""
    d = tmp_path_factory.mktemp("parents")
    old = os.environ.get("FIL_PROOFS_PARENT_CACHE")
    os.environ["FIL_PROOFS_PARENT_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("FIL_PROOFS_PARENT_CACHE", None)
    else:
        os.environ["FIL_PROOFS_PARENT_CACHE"] = old


def run_cli(*args: str, check: bool = False, cwd=None) -> subprocess.CompletedProcess:
    """Run `damocles` as a real process (python -m appliance)."""
    p = subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, cwd=cwd or ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check and p.returncode != 0:
        raise AssertionError(f"damocles {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p
