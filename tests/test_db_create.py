"""A database whose creation fails part-way (a full disk) leaves no half-made file behind: the
next open, once there is room, creates it anew instead of refusing it as damaged."""

import sqlite3

import pytest

from appliance.core import db as dbmod
from appliance.worker.journal import Journal, JournalError


def test_a_journal_that_could_not_be_created_is_removed_and_created_on_the_next_open(tmp_path, monkeypatch):
    real = dbmod._run_step

    def disk_full(conn, step):
        real(conn, step)
        raise sqlite3.OperationalError("database or disk is full")
    monkeypatch.setattr(dbmod, "_run_step", disk_full)
    with pytest.raises(JournalError, match="disk is full"):
        Journal(tmp_path)
    assert not list((tmp_path / "meta").glob("journal.db*"))       # nothing half-made is left
    monkeypatch.setattr(dbmod, "_run_step", real)                  # room again
    j = Journal(tmp_path)
    assert j.current() is None
    j.close()


def test_a_failed_open_of_an_existing_database_never_removes_it(tmp_path):
    j = Journal(tmp_path)
    j.close()
    path = tmp_path / "meta" / "journal.db"
    data = bytearray(path.read_bytes())
    data[100:200] = bytes(100)       # damaged: refused, and kept for the operator
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError):
        Journal(tmp_path)
    assert path.read_bytes() == bytes(data)
