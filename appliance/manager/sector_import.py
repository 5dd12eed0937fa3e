"""Moving sectors in: the sectors of a lotus-miner storage path or a Damocles persist store
(store_scan.py reads and checks them) become the manager's, each recorded as a sealed and
persisted sector in that store, so that the poster finds its files (Sealer.sector_indexer_find)
and the next WindowPoSt proves it.

`util sealer sectors import --store PATH` imports every good sector and refuses the rest by name
with the reason; a sector the manager already has is refused unless `--override`.
`util storage attach PATH` does the same and, as Damocles' attach updates its sector index, points
a finished sector the manager already has at this store (its files moved there).

The store must be one of the manager's persist stores (`[[Common.PersistStores]]`, or found by
`ScanPersistStores`): the manager proves sectors only from the stores its config names, and a
store attached by hand would be forgotten at the next start. A path that is none of them is
refused with the entry to add. Each sector's record, its history row and the miner's number
counter (raised past it: the number is never allocated again) are written in one transaction."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..core.sector import sector_name
from ..proofs.cid import cid_to_commitment
from ..rpc import INVALID_PARAMS, RPCError
from .config import PersistStore
from .store_scan import NAME, Found, check_store_sector, names_in

log = logging.getLogger("damocles.manager.import")

# An imported sector's PreCommit and proof were sent by another miner process: no nonce of this
# manager's outbox carries them. The keys are there (null) so that the committer, which sends the
# PreCommit and proof of every record holding `pre` / `commit_proof` without a nonce, never sends
# them again.
NOT_SENT_HERE = {"pre_nonce": None, "proof_nonce": None}


class SectorImporter:
    def __init__(self, config, state, chain, now=time.time):
        self.config, self.state, self.chain, self._now = config, state, chain, now

    def store(self, which: str) -> PersistStore:
        """The persist store named `which`, or at the path `which`; RPCError with the config entry
        to add otherwise."""
        for s in self.config.persist_stores:
            if s.name == which:
                return s
        path = Path(which).expanduser()
        if path.is_absolute():
            for s in self.config.persist_stores:
                if _same(Path(s.path), path):
                    return s
        known = ", ".join(f"{s.name} ({s.path})" for s in self.config.persist_stores) or "none"
        raise RPCError(INVALID_PARAMS, f"store: {which!r} is not one of the manager's persist stores (it has: {known}). "
                       f"Add it to the manager's config and restart it, as [[Common.PersistStores]] with Name = "
                       f"\"{path.name or 'store'}\" and Path = \"{which}\", or put a sectorstore.json in it "
                       f"(`util storage gen-sectorstore-json {which}`) under a [Common] ScanPersistStores glob")

    def import_store(self, which: str, numbers: list[int] | None = None, pattern: str = "*", override: bool = False,
                     reindex: bool = False) -> dict:
        """Import the store's good sectors (those in `numbers` only, when given). Returns
        {Store, Path, Imported, Reindexed, Unchanged, Refused}, each a list of store_scan.Found."""
        store = self.store(which)
        root = Path(store.path)
        if not root.is_dir():
            raise RPCError(INVALID_PARAMS, f"store {store.name}: {root} is not a directory")
        out: dict[str, list] = {"Imported": [], "Reindexed": [], "Unchanged": [], "Refused": []}
        wanted = set(numbers) if numbers else None
        names = names_in(root, pattern)
        for name in names:
            m = NAME.fullmatch(name)
            if wanted is not None and (m is None or int(m.group(2)) not in wanted):
                continue
            found = check_store_sector(self.chain, root, name)
            if found.reason is None and self.config.miner(found.miner) is None:
                found.reason = f"f0{found.miner} is not a miner of this manager ([[Miners]])"
            outcome = "Refused" if found.reason else self._take(store, found, override, reindex)
            out[outcome].append(found)
            level = logging.WARNING if outcome == "Refused" else logging.INFO
            log.log(level, "import from %s: %s %s%s", store.name, name, outcome.lower(),
                    f": {found.reason}" if found.reason else "", extra={"sector": name})
        if wanted is not None:
            listed = {f.number for fs in out.values() for f in fs}
            for n in sorted(wanted - listed):
                out["Refused"].append(Found(f"number {n}", None, n, reason=f"no sector numbered {n} in {root}"))
        return {"Store": store.name, "Path": str(root), **{k: [f.to_json() for f in v] for k, v in out.items()}}

    def _take(self, store: PersistStore, found: Found, override: bool, reindex: bool) -> str:
        """Record a good sector; the outcome's key. Sets found.reason when it is refused after all."""
        miner, number = found.miner, found.number
        key = "upgraded" if found.kind == "upgrade" else "persisted"
        rec = self.state.sector(miner, number)
        if rec is not None and not override:
            done = rec.get("finalized") and not rec.get("abort_reason") and not rec.get("removed")
            if done and rec.get(key) == store.name:
                return "Unchanged"
            if done and reindex:
                self.state.update(miner, number, **{key: store.name}, **({"persisted": store.name} if found.sector_key else {}))
                return "Reindexed"
            found.reason = (f"already in the manager's state (state {rec.get('state')}"
                            f"{', aborted' if rec.get('abort_reason') else ''}); --override replaces its record")
            return "Refused"
        self._record(store, found, key)
        return "Imported"

    def _record(self, store: PersistStore, found: Found, key: str) -> None:
        s = self.chain.sector(found.miner, found.number)
        now = self._now()
        info = {"allocated_at": now, "entered_at": now, "state": "Finished", "finalized": True, "imported": True,
                "imported_from": store.name, key: store.name}
        if found.sector_key:              # its sector key beside the update: removed with it, used to rebuild or unseal
            info["persisted"] = store.name
        elif found.sector_key_reason:
            log.warning("sector %s: the sector key in store %s is not recorded: %s", found.name, store.name,
                        found.sector_key_reason, extra={"sector": found.name})
        if not s.sector_key_cid:          # a snap-upgraded sector's CC commitments are its sector key's (not kept here)
            info["pre"] = {"CommR": cid_to_commitment(s.sealed_cid)[1].hex(), "CommD": cid_to_commitment(s.unsealed_cid)[1].hex()}
        info.update(NOT_SENT_HERE)
        with self.state.tx() as db:
            db.execute("INSERT INTO sectors (miner, number, proof, info, updated) VALUES (?, ?, ?, ?, ?) ON CONFLICT(miner, number) "
                       "DO UPDATE SET proof = excluded.proof, info = excluded.info, updated = excluded.updated",
                       (found.miner, found.number, s.seal_proof, json.dumps(info), now))
            db.execute("INSERT INTO sector_history (miner, number, at, prev, next, event, worker, level, error) "
                       "VALUES (?, ?, ?, NULL, 'Finished', 'Imported', NULL, NULL, ?)",
                       (found.miner, found.number, now, f"imported from store {store.name}"))
            db.execute("INSERT INTO counters (miner, next) VALUES (?, ?) ON CONFLICT(miner) DO UPDATE "
                       "SET next = CASE WHEN excluded.next > counters.next THEN excluded.next ELSE counters.next END",
                       (found.miner, found.number + 1))
            db.execute("DELETE FROM reservations WHERE miner = ? AND number = ?", (found.miner, found.number))
        log.info("sector %s: imported from store %s", sector_name(found.miner, found.number), store.name,
                 extra={"sector": sector_name(found.miner, found.number), "state": "Finished"})


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def register_import(server, service) -> None:
    """Venus.ImportStoreSectors (ours: Damocles' import reads a lotus-miner's API, its attach
    runs offline beside its manager): store, numbers (null: all), pattern, override, reindex."""
    from ..rpc.wire import boolean, list_of, optional, string, u64
    importer = SectorImporter(service.config, service.state, service.chain)
    server.register("Venus.ImportStoreSectors",
                    lambda store, numbers, pattern, override, reindex: importer.import_store(store, numbers, pattern or "*",
                                                                                            override, reindex),
                    "admin", [("store", string), ("numbers", optional(list_of(u64))), ("pattern", optional(string)),
                              ("override", boolean), ("reindex", boolean)])
