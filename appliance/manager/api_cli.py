"""Damocles' operator API (SealerCliAPI, RandomnessAPI, MinerAPI of the manager's `core/api.go`)
under Damocles' names, params and result shapes, answered from our state and the chain interface.

Sectors in Damocles live in two stores: `online` (being sealed, rebuilt or unsealed) and
`offline` (finalized: finished or aborted). We keep one table; a sector is `offline` when it is
finalized and no rebuild or unseal task holds it. Ours: the state "" means both."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

from .. import __version__
from ..chain.types import ChainError
from ..core.proof_types import seal_proof
from ..core.sector import sector_name
from ..proofs.cid import cid_to_commitment, commd_to_cid, commr_to_cid
from ..rpc import INVALID_PARAMS, SECTOR_NOT_FOUND, RPCError
from ..rpc.wire import b64, boolean, cid, i64, list_of, optional, sector_id, stored_u64, string, struct, u64
from . import sector_pages
from .task_shapes import sector_pieces
from .terminate import terminate_info

log = logging.getLogger("damocles.manager.cli_api")

ONLINE, OFFLINE = "online", "offline"
LIST_BATCH = 1000           # records read at a time when a listing walks many sectors
LIST_PAGE, LIST_PAGE_MAX = 100, 1000      # Venus.ListSectorsPage's default and largest page
JOB_ALL, JOB_SEALING, JOB_SNAPUP, JOB_REBUILD, JOB_UNSEAL = range(5)     # Damocles' SectorWorkerJob


# ----------------------------------------------------------------------------- params

def worker_state(v, field: str) -> str:
    if v not in (ONLINE, OFFLINE, ""):
        raise RPCError(INVALID_PARAMS, f"{field}: expected \"online\" or \"offline\" (or \"\" for both), got {v!r}")
    return v


def worker_job(v, field: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not JOB_ALL <= v <= JOB_UNSEAL:
        raise RPCError(INVALID_PARAMS, f"{field}: expected a SectorWorkerJob 0..4 (all, sealing, snapup, rebuild, unseal), got {v!r}")
    return v


def tipset_key(v, field: str) -> None:
    """Damocles' callers pass the empty key (the head); this chain has no tipset keys to look up."""
    if v not in (None, []):
        raise RPCError(INVALID_PARAMS, f"{field}: only the empty tipset key ([] or null, the head) is supported, got {v!r}")


def id_address(v, field: str) -> int:
    """An ID address (f0…/t0…) as go-address writes it."""
    if not isinstance(v, str) or not 3 <= len(v) <= 22 or v[:2] not in ("f0", "t0") or not v[2:].isascii() or not v[2:].isdigit():
        raise RPCError(INVALID_PARAMS, f"{field}: expected an ID address such as \"f01000\", got {v!r}")
    return stored_u64(int(v[2:]), field)       # an actor ID is below 2^63


def any_object(v, field: str) -> dict | None:
    if v is not None and not isinstance(v, dict):
        raise RPCError(INVALID_PARAMS, f"{field}: expected an object, got {v!r}")
    return v


extended_sector = struct({"SealProof": u64, "SectorNumber": u64, "SectorKey": optional(cid), "SealedCID": cid},
                         optional_keys=("SectorKey",))
rebuild_options = struct({"PiecesAvailable": boolean}, optional_keys=("PiecesAvailable",))


# ----------------------------------------------------------------------------- shapes

def bitfield_runs(numbers) -> list[int]:
    """go-bitfield's JSON: run lengths of an RLE+ bitfield, starting with a run of absent bits
    ([0] when empty)."""
    runs, pos = [], 0
    for n in sorted(set(numbers)):
        if runs and n == pos:
            runs[-1] += 1
        else:
            runs += [n - pos, 1]
        pos = n + 1
    return runs or [0]


def go_duration(seconds: float) -> str:
    """A duration as Go's time.Duration.String() writes it (modules.Duration's MarshalText):
    "1h0m0s", "1m30s", "5s", "500ms"."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{ns / size:g}{unit}"
    hours, rest = divmod(ns, 3600 * 10**9)
    minutes, rest = divmod(rest, 60 * 10**9)
    secs = f"{rest / 1e9:.9f}".rstrip("0").rstrip(".") + "s"
    return (f"{hours}h{minutes}m" if hours else f"{minutes}m" if minutes else "") + secs


def _cid_or_null(c: str | None) -> dict | None:
    return {"/": c} if c else None


def _record(row: tuple) -> dict:
    """A sector record as ManagerState.sectors gives it, from a (miner, number, proof, info, updated) row."""
    miner, number, proof, info, _ = row
    return {**json.loads(info), "miner": miner, "number": number, "proof": proof}


def sectors_query(v, field: str) -> dict:
    """Venus.ListSectorsPage's filter: every key optional, an unknown one refused by name (a
    misspelt filter must not list every sector)."""
    if not isinstance(v, dict):
        raise RPCError(INVALID_PARAMS, f"{field}: expected an object, got {v!r}")
    unknown = sorted(set(v) - set(SECTORS_QUERY))
    if unknown:
        raise RPCError(INVALID_PARAMS, f"{field}.{unknown[0]}: not a filter (expected {', '.join(SECTORS_QUERY)})")
    return struct(SECTORS_QUERY, optional_keys=tuple(SECTORS_QUERY))(v, field)


SECTORS_QUERY = {"Online": boolean, "Miner": stored_u64, "State": string, "Worker": string, "Failing": boolean,
                 "After": sector_id, "Limit": u64}


class CliAPI:
    def __init__(self, service):
        self.config, self.state, self.chain = service.config, service.state, service.chain
        self.sealer, self.poster, self.unsealer = service.sealer, service.poster, service.unsealer
        from .rebuild import Rebuilder
        from .snapup import SnapUp      # stateless over the state database: a second view is the same
        self.snap = SnapUp(self.config, self.state, self.chain, self.sealer.market, self.sealer, service.committer)
        self.rebuilder = Rebuilder(self.state, self.chain, self.sealer.market, self.poster)

    # ------------------------------------------------------------------ sector state

    def _tasks(self, table: str) -> set[tuple[int, int]]:
        return {(m, n) for m, n in self.state.query(f"SELECT miner, number FROM {table} WHERE state IN ('pending', 'allocated')")}

    def _latest(self, r: dict) -> dict | None:
        if not r.get("worker"):          # no worker has reported it yet
            return None
        row = self.state.one("SELECT prev, event FROM sector_history WHERE miner = ? AND number = ? ORDER BY id DESC LIMIT 1",
                             (r["miner"], r["number"]))
        failure = r.get("failure")
        return {"Worker": {"Instance": r.get("worker") or "", "Location": r.get("location") or ""},
                "StateChange": {"Prev": (row and row[0]) or "", "Next": r.get("state") or "", "Event": (row and row[1]) or ""},
                "Failure": {"Level": failure["Level"], "Desc": failure["Desc"]} if failure else None}

    def _upgrade(self, r: dict) -> dict:
        none = {"UpgradePublic": None, "UpgradedInfo": None, "UpgradeMessageID": None, "UpgradeLandedEpoch": None}
        if not r.get("upgraded"):
            return none
        s = self.chain.sector(r["miner"], r["number"])
        msg = self.state.one("SELECT message FROM snap_candidates WHERE miner = ? AND number = ?", (r["miner"], r["number"]))
        if s is None or not s.sector_key_cid:
            return none
        return {"UpgradePublic": {"CommR": list(cid_to_commitment(s.sector_key_cid)[1]), "SealedCID": {"/": s.sector_key_cid},
                                  "Activation": s.activation, "Expiration": s.expiration},
                "UpgradedInfo": {"AccessInstance": r["upgraded"], "SealedCID": {"/": s.sealed_cid},
                                 "UnsealedCID": {"/": s.unsealed_cid}, "Proof": None},
                "UpgradeMessageID": msg[0] if msg and msg[0] else None, "UpgradeLandedEpoch": None}

    def sector_state(self, r: dict, deals: list[dict], rebuilding: bool, unsealing: bool) -> dict:
        """Damocles' SectorState (core/types_sector_state.go), with ours after it (State, Worker,
        Persisted, StoreWait: Go's decoder skips them)."""
        out = {"ID": {"Miner": r["miner"], "Number": r["number"]}, "SectorType": r["proof"]}
        if r.get("ticket"):
            out["Ticket"] = r["ticket"]
        if r.get("seed"):
            out["Seed"] = r["seed"]
        out["Deals"] = None
        # SectorPieces as AllocateSanpUpSector writes them: offsets aligned as the worker places the pieces
        out["Pieces"] = sector_pieces(deals, seal_proof(r["proof"]).size.bytes) if deals else None
        pre = r.get("pre") or {}
        if pre.get("CommR") and pre.get("CommD"):
            out["Pre"] = {"CommR": {"/": commr_to_cid(bytes.fromhex(pre["CommR"]))},
                          "CommD": {"/": commd_to_cid(bytes.fromhex(pre["CommD"]))},
                          "Ticket": r.get("ticket") or {"Ticket": None, "Epoch": 0}}
        if r.get("commit_proof"):
            out["Proof"] = {"Proof": r["commit_proof"]}
        out["MessageInfo"] = {"PreCommitCid": _cid_or_null(r.get("pre_msg")), "CommitCid": _cid_or_null(r.get("proof_msg")),
                              "NeedSend": not r.get("finalized") and bool(("pre" in r and not r.get("pre_msg"))
                                                                          or ("commit_proof" in r and not r.get("proof_msg")))}
        out["TerminateInfo"] = terminate_info(r)
        latest = self._latest(r)
        if latest is not None:
            out["LatestState"] = latest
        out.update({"Finalized": bool(r.get("finalized")), "Removed": bool(r.get("removed")),
                    "AbortReason": r.get("abort_reason") or "", "Upgraded": bool(r.get("upgraded"))})
        out.update(self._upgrade(r))
        out.update({"Imported": bool(r.get("imported")), "NeedRebuild": rebuilding, "Unsealing": unsealing,
                    # ours
                    "State": r.get("state"), "Worker": r.get("worker"), "Persisted": r.get("persisted"),
                    "StoreWait": r.get("store_wait"), "FundsWait": r.get("funds_wait")})
        for key, field in (("proof_check", "ProofCheck"), ("snap_proof_check", "UpgradeProofCheck")):
            if r.get(key):      # a Groth16 proof of an external processor: who did (not) verify it
                out[field] = r[key]
        return out

    def _records(self, ws: str, only: tuple[int, int] | None):
        """The records `_states` looks at, in batches of LIST_BATCH: online ones from the open
        index (plus the few finished ones a rebuild or unseal task holds), never every sector
        ever sealed; offline or all of them walked by pages, not loaded at once."""
        if only is not None:
            rec = self.state.sector(*only)
            yield [rec] if rec is not None else []
            return
        if ws == ONLINE:
            yield self.state.sectors(open_only=True)
            held = sorted(self._tasks("rebuild_tasks") | self._tasks("unseal_tasks"))
            yield [r for r in (self.state.sector(*key) for key in held) if r is not None and r.get("finalized")]
            return
        f, after = sector_pages.SectorFilter(is_open=False if ws == OFFLINE else None), None
        while True:
            rows = sector_pages.rows(self.state, f, after, LIST_BATCH)
            yield [_record(row) for row in rows]
            if len(rows) < LIST_BATCH:
                return
            after = (rows[-1][0], rows[-1][1])

    def _states(self, ws: str, job: int = JOB_ALL, only: tuple[int, int] | None = None) -> list[dict]:
        with self.state.read():
            rebuild, unseal = self._tasks("rebuild_tasks"), self._tasks("unseal_tasks")
            out = []
            for records in self._records(ws, only):
                deals = self._deals(records)
                for r in records:
                    key = (r["miner"], r["number"])
                    rebuilding, unsealing = key in rebuild, key in unseal
                    offline = bool(r.get("finalized")) and not rebuilding and not unsealing
                    if ws and (ws == OFFLINE) != offline:
                        continue
                    upgraded = bool(r.get("upgraded"))
                    if not {JOB_ALL: True, JOB_SEALING: not upgraded and not rebuilding and not unsealing,
                            JOB_SNAPUP: upgraded and not rebuilding and not unsealing,
                            JOB_REBUILD: rebuilding, JOB_UNSEAL: unsealing}[job]:
                        continue
                    out.append(self.sector_state(r, deals.get(key, []), rebuilding, unsealing))
            return sorted(out, key=lambda s: (s["ID"]["Miner"], s["ID"]["Number"])) if ws == ONLINE else out

    def _deals(self, records: list[dict]) -> dict[tuple[int, int], list[dict]]:
        """The deals of these sectors (Market.deals' rows, in deal order), one query per miner."""
        out: dict[tuple[int, int], list[dict]] = {}
        by_miner: dict[int, list[int]] = {}
        for r in records:
            by_miner.setdefault(r["miner"], []).append(r["number"])
        for miner, numbers in by_miner.items():
            for i in range(0, len(numbers), LIST_BATCH):
                part = numbers[i:i + LIST_BATCH]
                for d in self.state.query("SELECT id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, sector "
                                          f"FROM deals WHERE miner = ? AND sector IN ({', '.join('?' * len(part))}) ORDER BY id",
                                          (miner, *part)):
                    out.setdefault((d[1], d[7]), []).append(
                        {"DealID": d[0], "Miner": d[1], "PieceCID": d[2], "PieceSize": d[3], "PayloadSize": d[4],
                         "StartEpoch": d[5], "EndEpoch": d[6], "Sector": d[7]})
        return out

    def list_sectors_page(self, query: dict) -> dict:
        """Ours: one page of sectors (Damocles' SectorState) by (miner, number) after `After`,
        filtered on the indexed columns: `Online` (true: Damocles' online, in flight or held by a
        rebuild or unseal task; false: offline; absent: both), `Miner`, `State`, `Worker`,
        `Failing`; `Limit` 1..LIST_PAGE_MAX (default LIST_PAGE). `Next`: the `After` of the next
        page, null at the end; `Total`: how many match; `Counts`: sectors per state, in flight
        (Online true), finished or aborted (false) or all (the counts table)."""
        f = sector_pages.SectorFilter(is_open=query["Online"], miner=query["Miner"], state=query["State"] or None,
                                      worker=query["Worker"] or None, failing=bool(query["Failing"]))
        limit = LIST_PAGE if query["Limit"] is None else query["Limit"]
        if not 1 <= limit <= LIST_PAGE_MAX:
            raise RPCError(INVALID_PARAMS, f"query.Limit: expected 1 to {LIST_PAGE_MAX}, got {limit}")
        after = query["After"]
        with self.state.read():
            rebuild, unseal = self._tasks("rebuild_tasks"), self._tasks("unseal_tasks")
            rows, total, nxt = sector_pages.page(self.state, f, None if after is None else (after["Miner"], after["Number"]),
                                                 limit, frozenset(rebuild | unseal))
            records = [_record(row) for row in rows]
            deals = self._deals(records)
            sectors = [self.sector_state(r, deals.get((r["miner"], r["number"]), []), (r["miner"], r["number"]) in rebuild,
                                         (r["miner"], r["number"]) in unseal) for r in records]
            counts: dict[str, int] = {}
            for (state, _), n in self.state.sector_counts(is_open=f.is_open).items():
                counts[state] = counts.get(state, 0) + n
        return {"Sectors": sectors, "Next": None if nxt is None else {"Miner": nxt[0], "Number": nxt[1]}, "Total": total,
                "Counts": counts}

    def list_sectors(self, ws: str, job: int) -> list[dict]:
        return self._states(ws, job)      # [] when none (Go decodes [] and null alike)

    def find_sector(self, ws: str, sid: dict) -> dict:
        found = self._states(ws, only=(sid["Miner"], sid["Number"]))
        if not found:
            where = f"in the {ws} sectors" if ws else "among the sectors"
            raise RPCError(SECTOR_NOT_FOUND, f"sector {sector_name(sid['Miner'], sid['Number'])} not found {where}")
        return found[0]

    def find_sector_in_all_states(self, sid: dict) -> dict:
        return self.find_sector("", sid)

    def find_sectors_with_deal(self, ws: str, deal_id: int) -> list[dict] | None:
        if deal_id == 0:
            raise RPCError(INVALID_PARAMS, "dealID: empty deal id (0)")
        return [s for s in self._states(ws) if any(p["DealInfo"]["DealID"] == deal_id for p in s["Pieces"] or [])] or None

    def find_sector_with_piece(self, ws: str, piece: str) -> dict | None:
        return next((s for s in self._states(ws) if any(p["Piece"]["PieceCID"]["/"] == piece for p in s["Pieces"] or [])), None)

    # ------------------------------------------------------------------ proving

    def _miner(self, miner: int):
        try:
            return self.chain.miner_info(miner)
        except ChainError as exc:
            raise RPCError(INVALID_PARAMS, f"miner: {exc}") from None

    def check_provable(self, miner: int, post_type: int, sectors: list[dict], strict: bool, state_check: bool) -> dict:
        """{sector number: why} for the sectors whose files fail the poster's pre-check (Go's
        map[abi.SectorNumber]string: keys are strings); a sector not live on chain is bad with that
        reason when stateCheck is set."""
        info = self._miner(miner)
        if post_type != info.window_post_proof:
            raise RPCError(INVALID_PARAMS, f"postProofType: miner f0{miner} proves with {info.window_post_proof}, got {post_type}")
        # strict: ours is always the poster's full check (files present, challenged leaves read)
        numbers = [s["SectorNumber"] for s in sectors]
        bad = {}
        live = [n for n in numbers if self.chain.sector(miner, n) is not None]
        if state_check:
            bad.update({n: "not a live sector of the miner on chain" for n in numbers if n not in live})
        bad.update(self.poster.check(miner, self.poster.targets(miner, live)))
        return {str(n): why for n, why in sorted(bad.items())}

    def simulate_wdpost(self, deadline: int, partition: int, miner: int, post_type: int, sectors: list[dict], rand: bytes) -> None:
        """As Damocles: start a WindowPoSt of the given sectors in the background and log how long
        it took (nothing is sent to the chain)."""
        info = self._miner(miner)
        if post_type != info.window_post_proof:
            raise RPCError(INVALID_PARAMS, f"postProofType: miner f0{miner} proves with {info.window_post_proof}, got {post_type}")
        if len(rand) != 32:
            raise RPCError(INVALID_PARAMS, f"rand: expected 32 bytes of randomness, got {len(rand)}")
        targets = self.poster.targets(miner, [s["SectorNumber"] for s in sectors])

        def run():
            from ..proofs.post import PrivateSector, generate_window_post
            from .poster import _path
            started = time.monotonic()
            try:
                sp = seal_proof(info.seal_proof)
                private = [PrivateSector(t.number, t.comm_r, _path(t.cache), _path(t.sealed)) for t in targets if t.sealed]
                result = generate_window_post(sp.window_post, sp, private, rand)
                log.info("simulated WindowPoSt of f0%d deadline %d partition %d: %d sectors, %d skipped, %.1fs", miner, deadline,
                         partition, len(targets), len(result.faults), time.monotonic() - started)
            except Exception as exc:      # a background check: its failure is logged, not raised
                log.warning("simulated WindowPoSt of f0%d deadline %d partition %d failed: %s", miner, deadline, partition, exc)
        threading.Thread(target=run, name="simulate-wdpost", daemon=True).start()

    def proving_sector_info(self, sid: dict) -> dict:
        """ProvingSectorInfo {OnChain: SectorOnChainInfo, Private: PrivateSectorInfo}."""
        s = self.chain.sector(sid["Miner"], sid["Number"])
        if s is None:
            raise RPCError(SECTOR_NOT_FOUND, f"sector {sector_name(sid['Miner'], sid['Number'])}: no sector info on chain")
        t = self.poster.targets(sid["Miner"], [sid["Number"]])[0]
        return {"OnChain": {"SectorNumber": s.number, "SealProof": s.seal_proof, "SealedCID": {"/": s.sealed_cid},
                            "DeprecatedDealIDs": list(s.deal_ids) or None, "Activation": s.activation, "Expiration": s.expiration,
                            "DealWeight": "0", "VerifiedDealWeight": "0", "InitialPledge": "0", "ExpectedDayReward": "0",
                            "ExpectedStoragePledge": "0", "PowerBaseEpoch": s.activation, "ReplacedDayReward": "0",
                            "SectorKeyCID": _cid_or_null(s.sector_key_cid), "Flags": 0, "DailyFee": "0"},
                "Private": {"Accesses": {"SealedFile": t.store or "", "CacheDir": t.store or ""},
                            "CacheDirPath": t.cache or "", "SealedSectorPath": t.sealed or "",
                            "CacheDirURI": t.cache or "", "SealedSectorURI": t.sealed or ""}}

    # ------------------------------------------------------------------ snapup

    def snapup_prefetch(self, miner: int, deadline: int | None) -> dict:
        diff = len(self.snap.fetch(miner, deadline)["Added"])
        total = self.state.one("SELECT COUNT(*) FROM snap_candidates WHERE miner = ? AND state = 'candidate'", (miner,))[0]
        return {"Total": total, "Diff": diff}

    def snapup_candidates(self, miner: int) -> list | None:
        """One bitfield per deadline (index = deadline) of the candidates not yet taken; null
        where a deadline has none."""
        self._miner(miner)
        numbers = [r[0] for r in self.state.query("SELECT number FROM snap_candidates WHERE miner = ? AND state = 'candidate'",
                                                  (miner,))]
        if not numbers:
            return None
        where = self.snap._locations(miner)
        per_deadline: dict[int, list[int]] = {}
        for n in numbers:
            if n in where:
                per_deadline.setdefault(where[n][0], []).append(n)
        if not per_deadline:
            return None
        return [bitfield_runs(per_deadline[d]) if d in per_deadline else None for d in range(max(per_deadline) + 1)]

    def snapup_cancel_commitment(self, sid: dict) -> None:
        """Our upgrade's message is sent at SubmitSnapUpProof, nothing waits to send it: with no
        message out this is a no-op, as Damocles' is with nothing to cancel; a message already
        sent cannot be withdrawn, and the answer says so."""
        row = self.state.one("SELECT state, message FROM snap_candidates WHERE miner = ? AND number = ?", (sid["Miner"], sid["Number"]))
        if row and row[0] == "submitted":
            raise RPCError(INVALID_PARAMS, f"sector {sector_name(sid['Miner'], sid['Number'])}: its upgrade message {row[1]} "
                                           "was already sent and cannot be withdrawn")
        return None

    # ------------------------------------------------------------------ workers and stores

    @staticmethod
    def _ping_info(info: dict, last: float) -> dict:
        summary = info.get("Summary") or {}
        return {"Info": {"Name": info["Name"], "Dest": info.get("Dest") or "", "Version": info.get("Version") or "",
                         "Summary": {k: summary.get(k) or 0 for k in ("Threads", "Empty", "Paused", "Running", "Waiting", "Errors")},
                         **({"Owner": info["Owner"]} if info.get("Owner") else {})},      # ours: the identity holding the name
                "LastPing": int(last)}

    def worker_list(self) -> list[dict]:
        return [self._ping_info(info, last) for _, info, last in self.state.workers()]

    def worker_get(self, name: str) -> dict | None:
        return next((self._ping_info(info, last) for n, info, last in self.state.workers() if n == name), None)

    def worker_remove(self, name: str) -> None:
        if not self.state.remove_worker(name):
            raise RPCError(INVALID_PARAMS, f"name: no worker {name!r}")

    def sector_indexer_find(self, kind: str, sid: dict) -> dict:
        """SectorIndexLocation: the names of the stores holding the sealed file and the cache."""
        if kind not in ("normal", "upgrade"):
            raise RPCError(INVALID_PARAMS, f"indexType: sector indexer of type {kind!r} is not supported (normal, upgrade)")
        where = self.sealer.sector_indexer_find(kind, sid)
        name = where["Instance"]["Name"] if where["Found"] else ""
        return {"Found": where["Found"], "Instance": {"SealedFile": name, "CacheDir": name}}

    def store_list(self) -> list[dict]:
        import shutil
        out = []
        for s in self.config.persist_stores:
            try:
                du = shutil.disk_usage(s.path)
                total, free, used = du.total, du.free, du.used
            except OSError:
                total = free = used = 0
            by = [{"By": sector_name(m, n), "Size": size, "At": 0}
                  for m, n, size in self.state.query("SELECT miner, number, size FROM reservations WHERE store = ? "
                                                     "ORDER BY miner, number", (s.name,))]
            out.append({**self.sealer.basic_info(s), "Meta": None, "Type": "filesystem", "Total": total, "Free": free,
                        "Used": used, "UsedPercent": used * 100.0 / total if total else 0.0,
                        "Reserved": sum(r["Size"] for r in by), "ReservedBy": by})
        return out

    def store_release_reserved(self, sid: dict) -> bool:
        held = self.state.reservation(sid["Miner"], sid["Number"]) is not None
        self.state.release(sid["Miner"], sid["Number"])
        return held

    def rebuild(self, sid: dict, opts: dict) -> bool:
        """Damocles answers true once the rebuild is set; the task is listed by Venus.RebuildTasks.
        PiecesAvailable changes nothing here: our deals' pieces stay in the piece store."""
        self.rebuilder.request(sid)
        return True

    def unseal_piece(self, sid: dict, piece: str, offset: int, size: int, dest: str) -> None:
        """Queue the unseal of a whole piece to `dest`. Go's answer is a channel, which go-jsonrpc
        streams only over websocket; with a dest it stays nil, and so our answer is null. With no
        dest (stream to the caller) it is refused."""
        if dest == "":
            raise RPCError(INVALID_PARAMS, "dest: streaming the piece back to the caller needs a websocket channel, which this "
                                           "manager does not serve; give a dest (file:///path, store://name/path or piecestore)")
        deal = next((d for d in self.sealer.market.deals(sid["Miner"]) if d["Sector"] == sid["Number"] and d["PieceCID"] == piece), None)
        if deal is not None and (offset != 0 or size not in (0, deal["PieceSize"] // 128 * 127)):
            raise RPCError(INVALID_PARAMS, f"offset/size: only whole pieces are unsealed (offset 0, size 0 or "
                                           f"{deal['PieceSize'] // 128 * 127}), got {offset}/{size}")
        self.unsealer.request(sid, piece, dest)
        return None

    # ------------------------------------------------------------------ randomness and miner

    def _rand(self, fn, *args) -> bytes:
        try:
            return fn(*args)
        except ChainError as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None

    def get_ticket(self, _tsk, epoch: int, miner: int) -> dict:
        return {"Ticket": base64.b64encode(self._rand(self.chain.seal_randomness, miner, epoch)).decode(), "Epoch": epoch}

    def get_seed(self, _tsk, epoch: int, miner: int) -> dict:
        return {"Seed": base64.b64encode(self._rand(self.chain.interactive_seed, miner, epoch)).decode(), "Epoch": epoch}

    def get_wdpost_challenge_rand(self, _tsk, epoch: int, miner: int) -> dict:
        return {"Epoch": epoch, "Rand": base64.b64encode(self._rand(self.chain.window_post_randomness, miner, epoch)).decode()}

    def get_wdpost_commit_rand(self, _tsk, epoch: int) -> dict:
        return {"Epoch": epoch, "Rand": base64.b64encode(self._rand(self.chain.chain_commit_randomness, epoch)).decode()}

    def get_info(self, miner: int) -> dict:
        info = self._miner(miner)
        return {"ID": info.actor, "Addr": f"f0{info.actor}", "SectorSize": info.sector_size,
                "WindowPoStProofType": info.window_post_proof, "SealProofType": info.seal_proof}

    def get_miner_config(self, miner: int) -> dict:
        """modules.MinerConfig from our [[Miners]] entry. Keys we have no setting for (senders,
        fees, SnapUp retries, Sealing) are left out: Go reads them as zero values."""
        m = self.config.miner(miner)
        if m is None:
            raise RPCError(INVALID_PARAMS, f"miner: {miner} is not a miner of this manager")

        def policy(b):
            return {"Batch": {"Threshold": b.threshold, "MaxWait": go_duration(b.max_wait),
                              "CheckInterval": go_duration(b.check_interval)}}
        return {"Actor": m.actor,
                "Sector": {"MinNumber": m.min_number, "MaxNumber": m.max_number, "Enabled": m.enabled,
                           "EnableDeals": m.enable_deals, "LifetimeDays": m.lifetime_days},
                "SnapUp": {}, "Commitment": {"Confidence": m.confidence, "Pre": policy(m.pre_batch), "Prove": policy(m.prove_batch)},
                "PoSt": {"Enabled": m.post.enabled, "Confidence": m.post.confidence, "SubmitConfidence": m.post.submit_confidence,
                         "ChallengeConfidence": m.post.challenge_confidence,
                         "MaxPartitionsPerPoStMessage": m.post.max_partitions_per_message},
                "Proof": {"Enabled": m.winning_post}, "Sealing": {}}


def register_cli(server, service) -> None:
    """Damocles' SealerCliAPI, RandomnessAPI and MinerAPI, and our own views that used those
    names before (now under their own: Venus.UnsealRequest, Venus.RebuildRequest,
    Venus.SnapUpCandidateList)."""
    api = CliAPI(service)
    sealer, r, a = service.sealer, "read", "admin"
    reg = server.register
    reg("Venus.ListSectors", api.list_sectors, r, [("state", worker_state), ("job", worker_job)])
    reg("Venus.ListSectorsPage", api.list_sectors_page, r, [("query", sectors_query)])     # ours: paged, filtered
    reg("Venus.FindSector", api.find_sector, r, [("state", worker_state), ("sid", sector_id)])
    reg("Venus.FindSectorInAllStates", api.find_sector_in_all_states, r, [("sid", sector_id)])
    reg("Venus.FindSectorsWithDeal", api.find_sectors_with_deal, r, [("state", worker_state), ("dealID", u64)])
    reg("Venus.FindSectorWithPiece", api.find_sector_with_piece, r, [("state", worker_state), ("pieceCid", cid)])
    from .sector_state_import import SectorStateImport      # state import-json (moving sectors between managers)
    reg("Venus.ImportSector", SectorStateImport(service.state, sealer.limits).import_sector, a,
        [("ws", worker_state), ("state", any_object), ("override", boolean)])
    reg("Venus.RestoreSector", sealer.restore_sector, a, [("sid", sector_id), ("forced", boolean)])
    reg("Venus.CheckProvable", api.check_provable, r, [("mid", stored_u64), ("postProofType", u64),
                                                       ("sectors", list_of(extended_sector)), ("strict", boolean),
                                                       ("stateCheck", boolean)])
    reg("Venus.SimulateWdPoSt", api.simulate_wdpost, a, [("ddlIndex", u64), ("partitionIndex", u64), ("maddr", id_address),
                                                         ("postProofType", u64), ("sis", list_of(extended_sector)), ("rand", b64)])
    reg("Venus.SnapUpPreFetch", api.snapup_prefetch, a, [("mid", stored_u64), ("dlindex", optional(u64))])
    reg("Venus.SnapUpCandidates", api.snapup_candidates, r, [("mid", stored_u64)])
    reg("Venus.SnapUpCandidateList", api.snap.candidates, r, [("miner", optional(stored_u64))])      # ours: with their state
    reg("Venus.SnapUpCancelCommitment", api.snapup_cancel_commitment, a, [("sid", sector_id)])
    reg("Venus.ProvingSectorInfo", api.proving_sector_info, r, [("sid", sector_id)])
    reg("Venus.WorkerGetPingInfo", api.worker_get, r, [("name", string)])
    reg("Venus.WorkerPingInfoList", api.worker_list, r, [])
    reg("Venus.WorkerPingInfoRemove", api.worker_remove, a, [("name", string)])
    reg("Venus.SectorIndexerFind", api.sector_indexer_find, r, [("indexType", string), ("sid", sector_id)])
    reg("Venus.StoreReleaseReserved", api.store_release_reserved, a, [("sid", sector_id)])
    reg("Venus.StoreList", api.store_list, r, [])
    reg("Venus.SectorSetForRebuild", api.rebuild, a, [("sid", sector_id), ("opt", rebuild_options)])
    reg("Venus.RebuildRequest", api.rebuilder.request, a, [("sid", sector_id)])          # ours: answers the task
    reg("Venus.UnsealPiece", api.unseal_piece, a, [("sid", sector_id), ("pieceCid", cid), ("offset", u64), ("size", u64),
                                                   ("dest", string)])
    reg("Venus.UnsealRequest", service.unsealer.request, a, [("sid", sector_id), ("pieceCid", string), ("dest", string)])
    reg("Venus.Version", lambda: f"damocles {__version__}", r, [])
    reg("Venus.GetTicket", api.get_ticket, r, [("tsk", tipset_key), ("epoch", i64), ("mid", stored_u64)])
    reg("Venus.GetSeed", api.get_seed, r, [("tsk", tipset_key), ("epoch", i64), ("mid", stored_u64)])
    reg("Venus.GetWindowPoStChanlleengeRand", api.get_wdpost_challenge_rand, r,
        [("tsk", tipset_key), ("epoch", i64), ("mid", stored_u64)])
    reg("Venus.GetWindowPoStCommitRand", api.get_wdpost_commit_rand, r, [("tsk", tipset_key), ("epoch", i64)])
    reg("Venus.GetInfo", api.get_info, r, [("mid", stored_u64)])
    reg("Venus.GetMinerConfig", api.get_miner_config, r, [("mid", stored_u64)])

