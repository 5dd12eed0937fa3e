"""core.files: a failed write leaves the previous file and no temporary; modes and no-replace."""

import os
import stat

import pytest

from appliance.core.files import atomic_output, atomic_write


def test_atomic_write_replaces_and_sets_the_mode(tmp_path):
    p = tmp_path / "f"
    atomic_write(p, b"one")
    atomic_write(p, "two", mode=0o600)
    assert p.read_text() == "two"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["f"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_output(p) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_no_replace_refuses_an_existing_file(tmp_path):
    p = tmp_path / "f"
    atomic_write(p, b"first", replace=False)
    with pytest.raises(FileExistsError):
        atomic_write(p, b"second", replace=False)
    assert p.read_bytes() == b"first"
    assert os.listdir(tmp_path) == ["f"]
