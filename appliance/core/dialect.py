"""What the manager's SQL says differently on SQLite and on PostgreSQL: a few fragments, not a
translator (the rest of the SQL is written to be taken by both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Dialect:
    name: str
    # appended to a SELECT whose rows the transaction then writes: on a server, two managers
    # serialize on those rows (SQLite's BEGIN IMMEDIATE already serializes every writer)
    for_update: str
    json_text: Callable[[str, str], str]      # (column, top-level key) -> the key's value

    @property
    def row_locks(self) -> bool:
        return bool(self.for_update)


SQLITE = Dialect("sqlite", "", lambda col, key: f"json_extract({col}, '$.{key}')")
POSTGRES = Dialect("postgres", " FOR UPDATE", lambda col, key: f"({col}::jsonb ->> '{key}')")
