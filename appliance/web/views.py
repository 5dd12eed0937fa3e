"""What the status page shows, computed on the manager (docs/observability.md).

`version()` is what the page asks every refresh: one indexed read of `web_version` (bumped by
triggers whenever something the page shows changes) plus what the manager holds in memory (the
chain epoch its poster follows, the workers' last pings, the generation of the chain views). Only
when that ETag changes does the page ask for `overview()`, which reads the sectors in a few indexed
queries and the chain views as the background refresher last computed them (chain_views.py): a
request never walks the chain."""

from __future__ import annotations

import hashlib
import json
import secrets
import time

from ..chain.deadlines import current_deadline
from ..core.sector import parse_sector_name, sector_name
from ..manager import sector_pages
from ..manager.sector_pages import SectorFilter
from ..manager.terminate import termination_row
from .chain_views import ChainViews

RECENT_FINISHED = 30          # finished or aborted sectors listed below those in flight
RECENT_TERMINATIONS = 100     # terminations listed, newest first
LIVE_PAGE = 50                # sectors in flight the overview carries; the rest come by pages (sectors_page)
ATTENTION_PAGE = 50           # failing sectors the overview carries
PAGE_DEFAULT = 200            # sectors or workers one page holds unless `limit` says
PAGE_MAX = 500                # the most sectors (or workers) one page of /ui/api/sectors (/ui/api/workers) holds
WORKERS_PAGE = 100            # workers the overview carries, those needing attention first; the rest come by pages
PING_FRESH = 60.0             # a worker that pinged within this many seconds is fresh, then late...
PING_SILENT = 600.0           # ...and silent after this many
FAULTS_SHOWN = 20             # sector numbers a partition's faulty (recovering) list carries; the count is whole
HEAVY_KEYS = ("commit_proof",)  # not sent to the page (a C2 proof can be megabytes)
EXPIRING_DAYS = 30              # the page's expiring sectors: those ending within this many days


class WebViews:
    def __init__(self, state, sealer, chain, poster, config, now=time.time):
        self.state, self.sealer, self.chain, self.poster, self.config, self._now = state, sealer, chain, poster, config, now
        self.boot = secrets.token_hex(4)        # a restarted manager never repeats an ETag
        self.expiry = None      # manager/expiry.py's Expiry, set by attach(): the expiring sectors
        self._listed_workers: tuple[str, ...] = ()      # the workers the last overview listed: version() sends their pings
        miners = [m.actor for m in config.miners] if config is not None else []
        self.chain_views = ChainViews(chain, miners, self.chain_views_of, wall=now)    # run by the manager's thread

    # ----------------------------------------------------------------- version

    def _epoch(self) -> int | None:
        epoch = getattr(self.chain, "epoch", None)     # the devnet's last processed epoch, kept current by the poster
        return epoch if isinstance(epoch, int) else None

    def version(self) -> dict:
        """`Pings`: the last pings of the workers the last overview listed (the page ticks their
        ages between overviews). The ETag also moves when a worker turns late or silent, or pings
        again after: the overview lists those first."""
        v = self.state.version()
        now, pings = self._now(), self.state.pings()
        late = sorted(f"{n}:{_freshness(now - t)}" for n, t in pings.items() if now - t >= PING_FRESH)
        mark = hashlib.blake2b("\n".join(late).encode(), digest_size=4).hexdigest() if late else "0"
        listed = self._listed_workers
        return {"ETag": f"{self.boot}.{v}.{self.chain_views.generation}.{mark}", "Epoch": self._epoch(), "Now": now,
                "Pings": {n: pings[n] for n in listed if n in pings}}

    # ---------------------------------------------------------------- sectors

    def _rows(self, where: str, params: tuple = (), order: str = "miner, number", limit: int | None = None) -> list[dict]:
        sql = f"SELECT miner, number, proof, info, updated FROM sectors WHERE {where} ORDER BY {order}"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return self._shown(self.state.query(sql, params))       # not held open

    def _shown(self, rows) -> list[dict]:
        out = []
        now = self._now()
        for miner, number, proof, info, updated in rows:
            r = json.loads(info)
            born = r.get("allocated_at") or updated
            entered = r.get("entered_at") or born
            out.append({"Sector": sector_name(miner, number), "Miner": miner, "Number": number, "ProofType": proof,
                        "State": r.get("state"), "Plan": r.get("plan") or "sealer", "Worker": r.get("worker"),
                        "Location": r.get("location"), "Age": round(now - born, 1), "InState": round(now - entered, 1),
                        "Updated": updated, "Failure": r.get("failure"), "Finalized": bool(r.get("finalized")),
                        "AbortReason": r.get("abort_reason"), "StoreWait": r.get("store_wait"),
                        "FundsWait": r.get("funds_wait")})
        return out

    def sectors(self) -> dict:
        """The sectors the page shows: counts per state (from the counts table), the first page of
        those in flight and of those failing, the last finished; never every sector (a farm has a
        million): the rest come by `sectors_page`, a sector by its number."""
        with self.state.read():     # the reads agree (one snapshot)
            live = self._rows("is_open = 1", limit=LIVE_PAGE)
            attention = self._rows("is_open = 1 AND failure_level IS NOT NULL", limit=ATTENTION_PAGE)
            failing = self.state.one("SELECT COUNT(*) FROM sectors WHERE is_open = 1 AND failure_level IS NOT NULL")[0]
            done = self._rows("is_open = 0", order="updated DESC", limit=RECENT_FINISHED)
            open_counts, counts = self._by_state(True), self._by_state(False)
        return {"Live": live, "LiveTotal": sum(open_counts.values()), "LiveCounts": open_counts,
                "Attention": attention, "Failing": failing, "Recent": done, "FinalizedCounts": counts}

    def _by_state(self, is_open: bool) -> dict:
        out: dict = {}
        for (state, _), n in self.state.sector_counts(is_open=is_open).items():
            out[state or None] = out.get(state or None, 0) + n
        return out

    def sectors_page(self, query: dict[str, str]) -> dict:
        """One page of sectors, by (miner, number) after `after` (a sector id like 1000-5):
        `open` 1 (in flight, the default) or 0 (finished or aborted), `state`, `worker`, `failing`
        (1: only those whose last report was a failure), `limit` (at most PAGE_MAX). `Next`: the
        `after` of the next page, null at the end; `Total`: how many match."""
        unknown = set(query) - {"open", "state", "worker", "failing", "after", "limit"}
        if unknown:
            raise ValueError(f"unknown filter {sorted(unknown)[0]!r}: open, state, worker, failing, after, limit")
        f = SectorFilter(is_open=_flag(query, "open", True), state=query.get("state") or None,
                         worker=query.get("worker") or None, failing=_flag(query, "failing", False))
        limit = _number(query, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
        after = parse_sector_name(query["after"]) if query.get("after") else None
        rows, total, nxt = sector_pages.page(self.state, f, after, limit)
        return {"Sectors": self._shown(rows), "Total": total, "Next": sector_name(*nxt) if nxt else None}

    def sector(self, miner: int, number: int) -> dict | None:
        with self.state.read():     # the record and its history agree
            rec = self.state.sector(miner, number)
            history = self.state.history(miner, number) if rec is not None else []
        if rec is None:
            return None
        for h, nxt in zip(history, history[1:] + [None]):
            h["Duration"] = round((nxt["at"] if nxt else self._now()) - h["at"], 3)
        return {"Sector": sector_name(miner, number), "Record": {k: v for k, v in rec.items() if k not in HEAVY_KEYS},
                "History": history}

    def terminations(self) -> list[dict]:
        """Sectors whose termination was asked (newest first): queued, sent, landed (epoch) or
        failed (the actor's error); `removed` once their files went (manager/terminate.py)."""
        rows = self.state.query("SELECT miner, number, info FROM sectors WHERE terminate_queued_at IS NOT NULL "
                                "ORDER BY terminate_queued_at DESC LIMIT ?", (RECENT_TERMINATIONS,))
        return [termination_row(miner, number, json.loads(info)) for miner, number, info in rows]

    # ---------------------------------------------------------------- workers

    def workers(self) -> dict:
        """The workers the overview lists: at most WORKERS_PAGE, those needing attention first
        (a late or silent ping, paused threads or errors in their last ping's summary; the
        stalest first), then the others by name; with how many there are, how many need
        attention, and how many pinged within PING_FRESH (`Fresh`), PING_SILENT (`Late`) or not
        (`Silent`). The rest come by `workers_page`."""
        now = self._now()
        rows = _by_name(self.state.workers())     # a farm has hundreds of workers: one read, sorted here
        attention = sorted((r for r in rows if _needs_attention(r, now)), key=lambda r: (r[2], r[0]))
        listed = attention[:WORKERS_PAGE]
        listed += [r for r in rows if not _needs_attention(r, now)][:WORKERS_PAGE - len(listed)]
        self._listed_workers = tuple(name for name, _, _ in listed)
        pinged = {"Fresh": 0, "Late": 0, "Silent": 0}
        for _, _, last in rows:
            pinged[_freshness(now - last)] += 1
        return {"Workers": [_worker_row(r, now) for r in listed], "Total": len(rows), "Attention": len(attention),
                "Pinged": pinged}

    def workers_page(self, query: dict[str, str]) -> dict:
        """One page of workers by name after `after`: `name` (only names containing it),
        `attention` (1: only those needing attention, 0: only the others), `limit` (at most
        PAGE_MAX). `Next`: the `after` of the next page, null at the end; `Total`: how many match."""
        unknown = set(query) - {"after", "limit", "name", "attention"}
        if unknown:
            raise ValueError(f"unknown filter {sorted(unknown)[0]!r}: after, limit, name, attention")
        limit = _number(query, "limit", PAGE_DEFAULT, 1, PAGE_MAX)
        attention = _flag(query, "attention", None)
        name, after = query.get("name") or "", query.get("after") or ""
        now = self._now()
        rows = [r for r in _by_name(self.state.workers()) if name in r[0]
                and (attention is None or _needs_attention(r, now) == attention)]
        page = [r for r in rows if r[0] > after][:limit]
        more = page and rows[-1][0] > page[-1][0]
        return {"Workers": [_worker_row(r, now) for r in page], "Total": len(rows), "Next": page[-1][0] if more else None}

    # ---------------------------------------------------------------- proving

    def proving(self) -> dict:
        """Per miner: the current deadline, the 48 deadlines with their partitions (those with
        sectors in detail: counts, and the first FAULTS_SHOWN faulty and recovering numbers), the
        last closed deadlines, WinningPoSt blocks; as the chain views last computed them (`AsOf`
        the epoch, `Age` seconds), {"Computing": true} before the first, or the chain's `Error`.
        The metrics and the page share them."""
        return self.chain_views.views("Proving")

    def chain_views_of(self, miner: int) -> dict:
        """A miner's chain views, computed by the refresher (never by a request): each view that
        the chain cannot give is its `Error`, the other still shown."""
        out = {}
        for kind, compute in (("Proving", self._miner_proving),
                              ("Expiring", None if self.expiry is None else lambda m: self.expiry.expiring_by_deadline(m, EXPIRING_DAYS))):
            if compute is None:
                continue
            try:
                out[kind] = compute(miner)
            except Exception as exc:      # noqa: BLE001 - a miner the chain does not know: shown, not raised
                out[kind] = {"Error": str(exc)}
        return out

    def _miner_proving(self, miner: int) -> dict:
        chain = self.chain
        info = chain.miner_info(miner)
        head = chain.head()
        dl = current_deadline(chain.policy, info.proving_period_start, head)
        deadlines = []
        every = getattr(chain, "all_deadline_partitions", None)     # a node: calls side by side; the devnet: one read
        all_parts = every(miner) if every else [chain.deadline_partitions(miner, i) for i in range(chain.policy.wpost_period_deadlines)]
        for index, parts in enumerate(all_parts):
            if not parts:
                continue
            rnd = self.poster.round(miner, dl.period_start, index)
            deadlines.append({"Index": index, "Current": index == dl.index,
                              "Partitions": [_partition(p) for p in parts],
                              "Round": _round(rnd)})
        records = chain.deadline_records(miner) if hasattr(chain, "deadline_records") else []
        blocks = chain.blocks(miner) if hasattr(chain, "blocks") else []
        recovered = declared = 0
        declarations: dict[int, list[int]] = {}      # deadline -> [sectors declared faulty, declared recovered]
        for r in self.poster.rounds(miner):
            d = declarations.setdefault(r["Deadline"], [0, 0])
            d[0] += len(r.get("declared_faults") or [])
            d[1] += len(r.get("declared_recoveries") or [])
            recovered += len(r.get("declared_recoveries") or [])
            declared += len(r.get("declared_faults") or [])
        return {"Epoch": head, "PeriodStart": dl.period_start, "Deadline": dl.index, "Open": dl.open, "Close": dl.close,
                "Deadlines": deadlines, "Records": records,
                "Declared": {str(k): {"Faulty": v[0], "Recovered": v[1]} for k, v in sorted(declarations.items()) if any(v)},
                "Totals": {
                    "PartitionsProven": sum(r["partitions_proven"] for r in records),
                    "PartitionsMissed": sum(r["partitions"] - r["partitions_proven"] for r in records),
                    "SectorsFaultyDetected": sum(r["sectors_faulty_new"] for r in records),
                    "SectorsDeclaredFaulty": declared, "SectorsDeclaredRecovered": recovered,
                    "BlocksWon": sum(1 for b in blocks if b["won"]), "BlocksMissed": sum(1 for b in blocks if not b["won"])}}

    # ---------------------------------------------------------------- overview

    def stores(self) -> list[dict]:
        return self.sealer.store_list()

    def expiring(self) -> dict:
        """Per miner: sectors expiring within EXPIRING_DAYS, by deadline, as the chain views last
        computed them (as proving())."""
        return self.chain_views.views("Expiring") if self.expiry is not None else {}

    def overview(self) -> dict:
        with self.state.read():       # the ETag describes exactly the sectors and workers sent with it
            v = self.version()
            proving = self.proving()      # the page lists the last closed deadlines only
            sectors, workers, terminations = self.sectors(), self.workers(), self.terminations()
        del v["Pings"]      # the workers listed carry their LastPing; the page ticks them by version()'s
        return {**v, "Sectors": sectors, "Workers": workers, "Stores": self.stores(), "Terminations": terminations,
                "Proving": {m: {**p, "Records": p["Records"][-12:]} if "Records" in p else p for m, p in proving.items()},
                "Expiring": self.expiring()}


def _by_name(rows: list[tuple[str, dict, float]]) -> list[tuple[str, dict, float]]:
    """In Python's order of names, which `after` compares by (a database's collation may differ)."""
    return sorted(rows, key=lambda r: r[0])


def _freshness(age: float) -> str:
    return "Fresh" if age < PING_FRESH else "Late" if age < PING_SILENT else "Silent"


def _needs_attention(row: tuple[str, dict, float], now: float) -> bool:
    _, info, last = row
    summary = info.get("Summary") or {}
    return now - last >= PING_FRESH or bool(summary.get("Paused")) or bool(summary.get("Errors"))


def _worker_row(row: tuple[str, dict, float], now: float) -> dict:
    name, info, last = row
    return {"Name": name, "Dest": info.get("Dest"), "Version": info.get("Version"), "Summary": info.get("Summary"),
            "LastPing": last, "PingAge": round(now - last, 1)}


def _partition(p) -> dict:
    """A partition as the page and /metrics read it: counts, and the first FAULTS_SHOWN faulty
    and recovering numbers (a dead disk makes thousands); the lists only when not empty."""
    out = {"Index": p.index, "Sectors": len(p.sectors), "Faulty": len(p.faulty), "Recovering": len(p.recovering),
           "Proven": p.proven}
    if p.faulty:
        out["FaultyFirst"] = list(p.faulty[:FAULTS_SHOWN])
    if p.recovering:
        out["RecoveringFirst"] = list(p.recovering[:FAULTS_SHOWN])
    return out


def _round(rnd: dict) -> dict:
    """The poster's round of a deadline as the page reads it: its state, error, and how many
    sectors it declared faulty and recovered (counts: a dead disk's declaration lists thousands)."""
    out = {k: rnd[k] for k in ("state", "error") if rnd.get(k) is not None}
    for k in ("declared_faults", "declared_recoveries"):
        if rnd.get(k) is not None:
            out[k] = len(rnd[k])
    return out


def _flag(query: dict[str, str], name: str, default: bool | None) -> bool | None:
    value = query.get(name)
    if value is None or value == "":
        return default
    if value not in ("0", "1"):
        raise ValueError(f"{name}: expected 0 or 1, got {value!r}")
    return value == "1"


def _number(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise ValueError(f"{name}: expected a number from {low} to {high}, got {value!r}")
    return int(value)
