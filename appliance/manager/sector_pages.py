"""Pages of sector records at farm scale: by (miner, number) after a key (keyset pagination, never
OFFSET), filtered on the indexed columns generated from the record (state.py SECTOR_COLUMNS), with
how many match. The status page's `/ui/api/sectors` and `Venus.ListSectorsPage` (the CLI's
listings) read sectors this way; the SQL is what SQLite and PostgreSQL both take."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SectorFilter:
    is_open: bool | None = None       # True: in flight; False: finished or aborted; None: both
    miner: int | None = None
    state: str | None = None          # the sealer state (PC1Done, Finished, Aborted, ...)
    worker: str | None = None
    failing: bool = False             # only those whose last report was a failure

    def where(self) -> tuple[str, tuple]:
        clauses, params = [], []
        for clause, value in (("is_open = ?", None if self.is_open is None else int(self.is_open)),
                              ("miner = ?", self.miner), ("state = ?", self.state), ("worker = ?", self.worker)):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if self.failing:
            clauses.append("failure_level IS NOT NULL")
        return " AND ".join(clauses) or "1 = 1", tuple(params)


def count(state, f: SectorFilter) -> int:
    """How many sectors match: from the counts table (a few rows) when only `is_open` and `state`
    filter, else one indexed COUNT."""
    if f.miner is None and f.worker is None and not f.failing:
        return sum(n for (st, _), n in state.sector_counts(is_open=f.is_open).items() if f.state is None or st == f.state)
    where, params = f.where()
    return int(state.one(f"SELECT COUNT(*) FROM sectors WHERE {where}", params)[0])


def rows(state, f: SectorFilter, after: tuple[int, int] | None, limit: int) -> list[tuple]:
    """Up to `limit` (miner, number, proof, info, updated) rows after `after`, by (miner, number)."""
    where, params = f.where()
    if after is not None:
        where += " AND (miner, number) > (?, ?)"
        params += tuple(after)
    return state.query(f"SELECT miner, number, proof, info, updated FROM sectors WHERE {where} "
                       f"ORDER BY miner, number LIMIT ?", (*params, int(limit)))


def page(state, f: SectorFilter, after: tuple[int, int] | None, limit: int,
         held: frozenset[tuple[int, int]] = frozenset()) -> tuple[list[tuple], int, tuple[int, int] | None]:
    """(rows, how many match in all, the `after` of the next page or None at the end), from one
    read snapshot. `held`: sectors a rebuild or unseal task holds, which Damocles counts as
    online whatever their record says: with `is_open` True the finished ones among them are
    listed too, with False they are left out (a few: looked up one by one)."""
    with state.read():
        total = count(state, f)
        finished_held = []
        if held and f.is_open is not None:
            where, params = SectorFilter(False, f.miner, f.state, f.worker, f.failing).where()
            for key in sorted(held):
                finished_held += state.query(f"SELECT miner, number, proof, info, updated FROM sectors "
                                             f"WHERE miner = ? AND number = ? AND {where}", (*key, *params))
        if f.is_open and finished_held:
            total += len(finished_held)
            found = sorted(rows(state, f, after, limit + 1) +
                           [r for r in finished_held if after is None or (r[0], r[1]) > tuple(after)])
        elif finished_held:       # offline: the held ones are online
            total -= len(finished_held)
            skip = {(r[0], r[1]) for r in finished_held}
            found = [r for r in rows(state, f, after, limit + 1 + len(skip)) if (r[0], r[1]) not in skip]
        else:
            found = rows(state, f, after, limit + 1)
    more = len(found) > limit
    found = found[:limit]
    return found, total, (found[-1][0], found[-1][1]) if more else None
