"""The status page's chain views, off the request path (docs/observability.md).

Per miner, the WindowPoSt view (the 48 deadlines, their partitions and rounds) and the sectors
expiring within 30 days walk the miner's whole chain state: at a farm's scale, seconds. One
background refresher (the manager's `chain-views` thread) computes them, a miner's again when the
head moves into another of its deadlines or when its last result is older than a bounded interval
(MIN_INTERVAL, or COST_FACTOR times what the last walks of all the miners took together, so that
walking takes at most about a COST_FACTOR-th of the manager's time), not at every state write. The page and `/metrics` read the
last result with the epoch it describes (`AsOf`) and its age; a request never waits for a walk: the
first one before any result reads `{"Computing": true}`. A chain that cannot tell is shown as the
miner's `Error`, never raised."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("damocles.web")

TICK = 0.5               # seconds between looks at the head (one ChainHead)
MIN_INTERVAL = 5.0       # a miner's views are recomputed this often while the head stays in its deadline...
COST_FACTOR = 10         # ...or, when walking is slow, every COST_FACTOR times what the last walks of all miners took
COMPUTING = {"Computing": True}
HEAD_FRESH = 2.0         # seconds the head this loop read stands for the chain's (recent_head)


class ChainViews:
    """`compute(miner)` returns {"Proving": ..., "Expiring": ...} for one miner, reading the chain
    (WebViews.chain_views_of); `clock` is monotonic seconds, `wall` the time shown as the age."""

    def __init__(self, chain, miners: list[int], compute, clock=time.monotonic, wall=time.time):
        self.chain, self.miners, self._compute, self._clock, self._wall = chain, list(miners), compute, clock, wall
        self._lock = threading.Lock()
        self._views: dict[int, dict] = {m: {"Proving": COMPUTING, "Expiring": COMPUTING} for m in self.miners}
        self._done: dict[int, tuple] = {}      # miner -> (deadline key, clock when computed, seconds it took)
        self._offsets: dict[int, int] = {}     # miner -> its proving period's offset (MinerInfo.proving_period_start)
        self.generation = 0                    # moves when a view shown changes: the page's ETag carries it
        self._head: tuple[int, float] | None = None     # the head this loop last read, and when (clock)

    # --------------------------------------------------------------------- reading

    def views(self, kind: str) -> dict[str, dict]:
        """{miner: the last `kind` view ("Proving" or "Expiring")} with its age in seconds; the
        dicts are shared: not to be changed."""
        now = self._wall()
        with self._lock:
            return {str(m): {**v[kind], "Age": round(now - v["At"], 1)} if "At" in v and kind in v else v.get(kind, COMPUTING)
                    for m, v in self._views.items()}

    def recent_head(self, within: float = HEAD_FRESH) -> int | None:
        """The head this loop read within the last `within` seconds (it looks every TICK), for
        readers that would otherwise ask the chain themselves (/metrics); None when it has not."""
        with self._lock:
            seen = self._head
        return seen[0] if seen is not None and self._clock() - seen[1] <= within else None

    def ready(self) -> bool:
        """Every miner has a computed view (or its error) to show."""
        with self._lock:
            return all("At" in v for v in self._views.values())

    # ------------------------------------------------------------------- computing

    def _deadline(self, miner: int, head: int) -> int | None:
        """Which deadline the miner is in at `head` (its views change with it); None when the
        chain does not know the miner (yet)."""
        if miner not in self._offsets:
            try:
                self._offsets[miner] = self.chain.miner_info(miner).proving_period_start
            except Exception:      # noqa: BLE001 - a miner the chain does not know yet: its walk says why
                return None
        return (head - self._offsets[miner]) // self.chain.policy.wpost_challenge_window

    def due(self, miner: int, head: int) -> bool:
        done = self._done.get(miner)
        if done is None:
            return True
        key, at, _ = done
        cost = sum(d[2] for d in self._done.values())       # a round over every miner
        return key != self._deadline(miner, head) or self._clock() - at >= max(MIN_INTERVAL, COST_FACTOR * cost)

    def refresh(self, force: bool = False, stop: threading.Event | None = None) -> list[int]:
        """One pass: the views of each miner that is due (all with `force`) computed again.
        Returns the miners recomputed."""
        try:
            head = self.chain.head()
        except Exception as exc:      # noqa: BLE001 - shown on the miners that have no view yet, not raised
            self._failed(f"chain head: {exc}")
            return []
        with self._lock:
            self._head = (head, self._clock())
        done = []
        for miner in self.miners:
            if stop is not None and stop.is_set():
                break
            if force or self.due(miner, head):
                self._refresh_miner(miner, head)
                done.append(miner)
        return done

    def _refresh_miner(self, miner: int, head: int) -> None:
        t0 = self._clock()
        try:
            with self.chain.pinned_head():      # both views read one tipset (a node's answers shared between them)
                epoch = self.chain.head()
                views = self._compute(miner)
        except Exception as exc:      # noqa: BLE001 - a chain that cannot tell: shown, not raised
            epoch, views = head, {"Proving": {"Error": str(exc)}, "Expiring": {"Error": str(exc)}}
        cost = self._clock() - t0
        shown = {k: {**v, "AsOf": epoch} for k, v in views.items()}
        with self._lock:
            before = self._views.get(miner, {})
            if {k: before.get(k) for k in shown} != shown:
                self.generation += 1
            self._views[miner] = {**shown, "At": self._wall()}
            self._done[miner] = (self._deadline(miner, epoch), self._clock(), cost)
        if cost > 1.0:
            log.info("miner f0%s: the status page's chain views took %.1f s (epoch %s)", miner, cost, epoch)

    def _failed(self, why: str) -> None:
        with self._lock:
            for miner, v in self._views.items():
                if "At" not in v and v["Proving"].get("Error") != why:
                    self._views[miner] = {"Proving": {"Error": why}, "Expiring": {"Error": why}}
                    self.generation += 1

    def run(self, stop: threading.Event) -> None:
        """The manager's `chain-views` loop."""
        while not stop.is_set():
            try:
                self.refresh(stop=stop)
            except Exception:      # noqa: BLE001 - the loop outlives a bad pass; the next one tries again
                log.exception("the status page's chain views failed")
            stop.wait(TICK)
