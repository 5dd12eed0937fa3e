"""The embedded market on the manager: pieces in `[[Common.PieceStores]]`, deals published on
the devnet, and AcquireDeals packing pending deals into a sector.

- A piece is uploaded to `PUT /piecestore/<piece CID>` (admin); the manager computes its CommP
  and refuses a body whose CommP is not the CID. Each upload writes its own temporary file and
  renames the one it checked; one upload per CID at a time (a concurrent one is refused, 409). Workers read it back from
  `GET /piecestore/<piece CID>` (write) unless they have it in a `local_pieces_dirs`.
- `Venus.MarketImportDeal` publishes a deal for a stored piece and keeps it pending.
- AcquireDeals takes pending deals in the order they were imported, in Filecoin's alignment (each
  piece at a multiple of its size), up to MaxDeals; it gives nothing when the pieces would use
  less than MinUsedSpace, and skips deals that start before a sector taken now could be proven
  (`[Miners.Sector] SealingEpochs`). A sector that aborts gives its deals back, unless its
  PreCommit already claimed them on chain.
- Bounds: the piece stores hold at most `[Market] PieceStoreQuota` bytes of pieces (an upload
  that would pass it is refused before its body is read, HTTP 507); a piece no deal names is
  removed `[Market] UnusedPieceExpiry` after its upload (a deal, pending, sealing or sealed,
  keeps its piece)."""

from __future__ import annotations

import os
import re
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..core.files import atomic_output
from ..proofs import ProofError
from ..proofs.cid import cid_to_commitment, commd_to_cid
from ..proofs.commitment import PieceInfo, commp_file, piece_offsets
from ..rpc import INVALID_PARAMS, RPCError

EPOCHS_PER_DAY = 2880
CID_RE = re.compile(r"^baga6ea4sea[a-z2-7]{40,80}$")


class UploadInProgress(ValueError):
    """Another upload of the same piece CID is running (HTTP 409: try again when it is done)."""


class PieceStoreFull(ValueError):
    """The upload would take the piece stores past `[Market] PieceStoreQuota` (HTTP 507)."""


class Market:
    def __init__(self, config, state, chain, now=time.time):
        self.config, self.state, self.chain, self._now = config, state, chain, now
        self._uploading: dict[str, int] = {}       # piece CID -> bytes it is writing
        self._uploading_lock = threading.Lock()
        self._pieces_lock = threading.Lock()        # a piece is not removed between a deal's check of it and its insert

    @contextmanager
    def _sole_upload(self, cid: str, length: int):
        """Hold the CID for this upload and its bytes against the quota, both checked with
        every upload running now, before a byte of the body is read."""
        with self._uploading_lock:
            if cid in self._uploading:
                raise UploadInProgress(f"another upload of {cid} is in progress: try again when it has finished")
            existing = self.piece_path(cid)        # replaced by this upload: its room is this upload's
            stored = self.stored_bytes() - (existing.stat().st_size if existing else 0)
            running, quota = sum(self._uploading.values()), self.config.piece_store_quota
            if stored + running + length > quota:
                self.state.limits.count("piece_quota")
                raise PieceStoreFull(f"the piece stores hold {stored} bytes of pieces"
                                     f"{f' and {running} bytes being uploaded' if running else ''}; {length} more would "
                                     f"pass [Market] PieceStoreQuota ({quota} bytes): import deals for the stored pieces, "
                                     "or wait for unused ones to expire ([Market] UnusedPieceExpiry)")
            self._uploading[cid] = length
        try:
            yield
        finally:
            with self._uploading_lock:
                self._uploading.pop(cid, None)

    # ------------------------------------------------------------------ piece store

    def piece_path(self, cid: str) -> Path | None:
        for s in self.config.piece_stores:
            p = s.path / cid
            if p.is_file():
                return p
        return None

    def _stored(self):
        """(CID, path, stat) of every piece in the piece stores (not the temporaries of uploads)."""
        for s in self.config.piece_stores:
            try:
                entries = list(os.scandir(s.path))
            except FileNotFoundError:
                continue
            for e in entries:
                if CID_RE.match(e.name) and e.is_file(follow_symlinks=False):
                    try:
                        yield e.name, Path(e.path), e.stat(follow_symlinks=False)
                    except FileNotFoundError:      # removed meanwhile
                        continue

    def stored_bytes(self) -> int:
        """Bytes of pieces in the piece stores (what PieceStoreQuota bounds)."""
        return sum(st.st_size for _, _, st in self._stored())

    def expire_unused(self) -> list[str]:
        """Remove pieces that no deal names, uploaded more than `[Market] UnusedPieceExpiry` ago
        (none being uploaded again); returns their CIDs (each counted as piece_expired)."""
        cutoff, removed = self._now() - self.config.unused_piece_expiry, []
        for cid, path, st in list(self._stored()):
            if st.st_mtime >= cutoff:
                continue
            with self._uploading_lock, self._pieces_lock:
                if cid in self._uploading or self.state.one("SELECT 1 FROM deals WHERE piece_cid = ? LIMIT 1", (cid,)):
                    continue
                try:
                    if path.stat().st_mtime >= cutoff:      # uploaded again since the scan
                        continue
                    path.unlink()
                except FileNotFoundError:
                    continue
            self.state.limits.count("piece_expired")
            removed.append(cid)
        return removed

    def store_piece(self, cid: str, body, length: int) -> dict:
        """Stream an upload into the first piece store, check its CommP, keep it as `<cid>`."""
        if not CID_RE.match(cid):
            raise ValueError(f"{cid!r} is not a piece CID (baga6ea4sea...)")
        if not self.config.piece_stores:
            raise ValueError("the manager has no [[Common.PieceStores]] to keep pieces in")
        store = self.config.piece_stores[0]
        store.path.mkdir(parents=True, exist_ok=True)
        with self._sole_upload(cid, length), atomic_output(store.path / cid) as tmp:      # a temporary of this upload's own
            with open(tmp, "wb") as f:
                left = length
                while left > 0:
                    chunk = body.read(min(1 << 20, left))
                    if not chunk:
                        raise ValueError(f"upload ended after {length - left} of {length} bytes")
                    f.write(chunk)
                    left -= len(chunk)
            info, payload = commp_file(tmp)        # the file checked is the file renamed
            if commd_to_cid(info.commitment) != cid:
                raise ValueError(f"the uploaded bytes have piece CID {commd_to_cid(info.commitment)}, not {cid}")
        return {"PieceCID": cid, "PieceSize": info.size, "PayloadSize": payload, "Store": store.name}

    # ----------------------------------------------------------------------- deals

    def import_deal(self, miner: int, cid: str, start_epoch: int | None, duration: int | None) -> dict:
        m = self.config.miner(miner)
        if m is None:
            raise RPCError(INVALID_PARAMS, f"miner: {miner} is not a miner of this manager")
        with self._pieces_lock:          # the piece stays until its deal is recorded (expire_unused)
            path = self.piece_path(cid)
            if path is None:
                raise RPCError(INVALID_PARAMS, f"piece {cid} is in no piece store: upload it first (damocles util piece import)")
            info, payload = commp_file(path)
            head = self.chain.head()
            start = start_epoch if start_epoch is not None else head + 2 * m.sealing_epochs
            if start <= head + m.sealing_epochs:
                raise RPCError(INVALID_PARAMS, f"start epoch {start} is too soon: a sector needs {m.sealing_epochs} epochs "
                                               f"(SealingEpochs) to be proven and the head is {head}")
            end = start + (duration if duration is not None else 180 * EPOCHS_PER_DAY)
            deal_id = self.chain.publish_deal(miner, cid, info.size, start, end)
            with self.state.tx() as db:
                db.execute("INSERT INTO deals (id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, store) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (deal_id, miner, cid, info.size, payload, start, end,
                                                              str(path.parent)))
        return {"DealID": deal_id, "PieceCID": cid, "PieceSize": info.size, "PayloadSize": payload,
                "StartEpoch": start, "EndEpoch": end}

    def deals(self, miner: int | None = None, db=None) -> list[dict]:
        """The deals, of one miner or all; with `db` (a write transaction's connection) their rows
        are locked until it ends (on a server: another manager packing deals waits)."""
        which, params = ("", ()) if miner is None else ("WHERE miner = ? ", (miner,))
        lock = self.state.sql.for_update if db is not None else ""
        rows = (db or self.state.db.conn()).execute(
            f"SELECT id, miner, piece_cid, piece_size, payload_size, start_epoch, end_epoch, sector "
            f"FROM deals {which}ORDER BY id{lock}", params).fetchall()
        return [{"DealID": r[0], "Miner": r[1], "PieceCID": r[2], "PieceSize": r[3], "PayloadSize": r[4], "StartEpoch": r[5],
                 "EndEpoch": r[6], "Sector": r[7]} for r in rows]

    def _deal_info(self, r: dict) -> dict:
        """Damocles' DealInfo, with the sizes a worker needs to place the piece."""
        return {"ID": r["DealID"], "PieceCID": {"/": r["PieceCID"]}, "PieceSize": r["PieceSize"], "PayloadSize": r["PayloadSize"],
                "Proposal": {"Provider": f"f0{r['Miner']}", "StartEpoch": r["StartEpoch"], "EndEpoch": r["EndEpoch"],
                             "PieceSize": r["PieceSize"]}}

    def acquire(self, miner: int, number: int, sector_bytes: int, max_deals: int | None, min_used: int | None) -> list[dict] | None:
        """The deals of the sector: those it already has, or pending ones packed now (chosen and
        taken in one transaction, so two sectors asking at once never get the same deal)."""
        m = self.config.miner(miner)
        head = self.chain.head()          # read before the write lock is held
        with self.state.tx() as db:
            pending = self.deals(miner, db)
            held = [d for d in pending if d["Sector"] == number]
            if held:
                return [self._deal_info(d) for d in held]
            if m is None or not m.enable_deals:
                return None
            chosen: list[dict] = []
            for d in pending:
                if d["Sector"] is not None or d["StartEpoch"] <= head + m.sealing_epochs:
                    continue
                if max_deals is not None and len(chosen) >= max_deals:
                    break
                try:
                    piece_offsets([PieceInfo(x["PieceSize"], cid_to_commitment(x["PieceCID"])[1]) for x in chosen + [d]],
                                  sector_bytes)
                except ProofError:
                    continue          # does not fit after the ones chosen: a later, smaller one may
                chosen.append(d)
            used = sum(d["PieceSize"] for d in chosen)
            if not chosen or (min_used and used < min_used):
                return None
            for d in chosen:
                db.execute("UPDATE deals SET sector = ? WHERE id = ? AND sector IS NULL", (number, d["DealID"]))
            # deals_at: when the hold began (sealer.return_held_deals measures progress from here on)
            self.state.update(miner, number, deals=[d["DealID"] for d in chosen], deals_at=self._now())
        return [self._deal_info({**d, "Sector": number}) for d in chosen]

    def holders(self) -> list[tuple[int, int]]:
        """(miner, number) of every sector that holds deals."""
        return self.state.query("SELECT DISTINCT miner, sector FROM deals WHERE sector IS NOT NULL ORDER BY miner, sector")

    def pieces(self, miner: int, number: int) -> list[PieceInfo]:
        return [PieceInfo(d["PieceSize"], cid_to_commitment(d["PieceCID"])[1]) for d in self.deals(miner) if d["Sector"] == number]

    def release(self, miner: int, number: int) -> bool:
        """Give an aborted sector's deals back, unless its PreCommit holds them on chain."""
        if self.chain.precommit(miner, number) is not None or self.chain.sector(miner, number) is not None:
            return False
        with self.state.tx() as db:
            db.execute("UPDATE deals SET sector = NULL WHERE miner = ? AND sector = ?", (miner, number))
        return True

