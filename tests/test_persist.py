"""Persist streams: bounded memory whatever the file size, a copy that differs or is cut short
(a full store) never lands under its final name, and a full store is a temp failure naming the
store that clears once space returns."""

import builtins
import errno
import json
import os
import tracemalloc

import pytest

from appliance.worker import persist as persist_mod
from appliance.worker.failure import Temp
from appliance.worker.persist import StoreFull, persist
from appliance.worker.steps import Paths

from .smallfs import mounted_tmpfs

NAME = "s-t01000-1"


def _sector(tmp_path, sealed_bytes: int) -> Paths:
    """A sector's files as persist sees them (contents do not matter to persist)."""
    p = Paths(tmp_path / "seal", NAME)
    p.make()
    with open(p.sealed, "wb") as f:
        f.write(os.urandom(1 << 20))
        f.truncate(sealed_bytes)
    (p.cache / "sc-02-data-tree-r-last.dat").write_bytes(os.urandom(4096))
    (p.cache / "p_aux").write_bytes(os.urandom(64))
    (p.cache / "t_aux").write_bytes(os.urandom(900))
    return p


def _store(path, name="ps1"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "sectorstore.json").write_text(json.dumps({"ID": "x", "Name": name, "ReadOnly": False}))
    return path


def _persisted(store) -> list[str]:
    return sorted(str(f.relative_to(store)) for f in store.rglob("*") if f.is_file() and f.name != "sectorstore.json")


def test_persist_memory_stays_at_a_chunk_for_a_file_much_larger(tmp_path, monkeypatch):
    monkeypatch.setattr(persist_mod, "CHUNK", 1 << 20)
    p = _sector(tmp_path, 64 << 20)          # 64 chunks
    store = _store(tmp_path / "store")
    tracemalloc.start()
    try:
        persist(p, store, NAME)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * (1 << 20), f"peak {peak} bytes while persisting a 64 MiB file with 1 MiB chunks"
    assert (store / "sealed" / NAME).read_bytes() == p.sealed.read_bytes()
    assert _persisted(store) == [f"cache/{NAME}/p_aux", f"cache/{NAME}/sc-02-data-tree-r-last.dat", f"cache/{NAME}/t_aux",
                                 f"sealed/{NAME}"]


class _FaultyFile:
    """Wraps the temporary copy: fails with ENOSPC after `room` bytes, or flips one byte."""

    def __init__(self, f, room=None, flip_at=None):
        self.f, self.room, self.flip_at, self.pos = f, room, flip_at, 0

    def write(self, b):
        b = bytearray(b)
        if self.room is not None and self.pos + len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if self.flip_at is not None and self.pos <= self.flip_at < self.pos + len(b):
            b[self.flip_at - self.pos] ^= 1
        self.pos += len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def _fault_tmp_files(monkeypatch, **fault):
    real_open = builtins.open

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return _FaultyFile(f, **fault) if "w" in mode and str(path).endswith(".tmp") else f
    monkeypatch.setattr(persist_mod, "open", fake_open, raising=False)


def test_a_full_store_is_a_temp_failure_naming_the_store_and_leaves_nothing(tmp_path, monkeypatch):
    p = _sector(tmp_path, 4 << 20)
    store = _store(tmp_path / "store", "fast-ps")
    _fault_tmp_files(monkeypatch, room=1 << 20)
    with pytest.raises(StoreFull) as info:
        persist(p, store, NAME)
    assert info.value.level == "temp" and info.value.counts is False
    assert "persist store fast-ps" in str(info.value) and "ENOSPC" in str(info.value) and f"{NAME}" in str(info.value)
    assert _persisted(store) == []               # no partial file, under the final name or the temporary one
    monkeypatch.undo()                           # space returns
    persist(p, store, NAME)
    assert (store / "sealed" / NAME).read_bytes() == p.sealed.read_bytes()


def test_a_copy_that_differs_is_refused_and_not_renamed(tmp_path, monkeypatch):
    p = _sector(tmp_path, 2 << 20)
    store = _store(tmp_path / "store")
    _fault_tmp_files(monkeypatch, flip_at=12345)
    with pytest.raises(Temp, match="differs from the original"):
        persist(p, store, NAME)
    assert _persisted(store) == []


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A real file system of 64 KiB (needs root and mount; skipped elsewhere)."""
    with mounted_tmpfs(tmp_path / "tmpfs", "64k") as d:
        yield d


def test_a_really_full_file_system_then_space_returns(tmp_path, tiny_tmpfs):
    p = _sector(tmp_path, 24 << 10)
    store = _store(tiny_tmpfs, "tiny")
    filler = tiny_tmpfs / "filler"
    with open(filler, "wb") as f:
        try:
            f.write(bytes(60 << 10))
        except OSError:
            pass
    with pytest.raises(StoreFull, match="persist store tiny .*ENOSPC"):
        persist(p, store, NAME)
    assert _persisted(store) == ["filler"]
    filler.unlink()
    persist(p, store, NAME)
    assert (store / "sealed" / NAME).read_bytes() == p.sealed.read_bytes()
