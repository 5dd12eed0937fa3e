"""What each state of the sealer plan does (`exec`): one step of a sector, returning the event
that leaves the state, or raising a classified failure. Steps are written so that re-running an
interrupted step from its start is safe: outputs are built under temporary names and renamed."""

from __future__ import annotations

import base64
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from ..core.crash import crash_point
from ..core.files import atomic_write
from ..core.proof_types import seal_proof
from ..core.protocol import OnChainState, SubmitResult
from ..core.sector import SectorID, sector_name
from ..proofs import ProofError, c1_json
from ..proofs.c2 import seal_commit_phase2, verify_seal
from ..proofs.cid import cid_to_commitment, commd_to_cid
from ..proofs.commitment import PieceInfo, zero_comm
from ..proofs.external_snark import is_builtin_proof, proof_form
from ..proofs.pc1 import generate_labels, replica_id
from ..proofs.pc2 import read_p_aux, seal_pre_commit_phase2
from ..proofs.poseidon import hash_nodes
from ..proofs.porep import seal_commit_phase1, verify_c1
from ..rpc import SECTOR_NOT_FOUND, RPCError
from ..rpc.client import HTTPStatusError, TransportError
from . import c2_stage, stage_data, stage_seal, tasks
from .failure import Abort, Crit, Perm, Temp, Unreachable, Wait
from .persist import persist
from .plan import Event

log = logging.getLogger("damocles.worker.steps")
PC2_RUNNING = ".pc2_running"     # in the cache dir while an external PC2 may have changed `sealed`


def deal_pieces(deals: list[dict] | None) -> list[PieceInfo]:
    """The sector's deal pieces (padded size, CommP) as the journal keeps them."""
    return [PieceInfo(d["piece_size"], cid_to_commitment(d["piece_cid"])[1]) for d in deals or []]

ACCEPTED, DUPLICATE, MISMATCHED, REJECTED, FILES_MISSED = SubmitResult
PENDING, PACKED, LANDED, NOT_FOUND, FAILED, PERM_FAILED, SHOULD_ABORT = OnChainState


@dataclass
class Paths:
    location: Path
    name: str

    @property
    def data(self) -> Path:
        return self.location / "data"

    @property
    def staged(self) -> Path:
        return self.data / "unsealed" / self.name

    @property
    def cache(self) -> Path:
        return self.data / "cache" / self.name

    @property
    def sealed(self) -> Path:
        return self.data / "sealed" / self.name

    @property
    def pieces(self) -> Path:
        return self.data / "pieces" / self.name

    def make(self) -> None:
        for d in (self.staged.parent, self.cache, self.sealed.parent):
            d.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        for p in (self.staged, self.sealed, self.data / "update" / self.name):
            p.unlink(missing_ok=True)
        for d in (self.cache, self.pieces, self.data / "update-cache" / self.name):
            shutil.rmtree(d, ignore_errors=True)


def call(rpc, method: str, *params):
    """An RPC call with Damocles' classification: no answer is temp, 11001 aborts the sector."""
    try:
        return rpc.call(method, *params)
    except TransportError as exc:
        raise Unreachable(f"{method}: {exc}") from None
    except RPCError as exc:
        if exc.code == SECTOR_NOT_FOUND:
            raise Abort(f"{method}: the manager does not know the sector ({exc.message})") from None
        raise Temp(f"{method}: {exc.message} (code {exc.code})") from None


def _sector_piece(p, where: str) -> dict:
    """One of Damocles' SectorPieceV2 {Piece: {Size, PieceCID}, DealInfo: {DealID, PayloadSize, ...}}
    as the journal keeps it; a piece without DealInfo (null) is deal 0. A shape the manager should
    not send is a perm failure that names the field."""
    try:
        piece, deal = p["Piece"], p.get("DealInfo") or {}
        size, cid = piece["Size"], piece["PieceCID"]["/"]
        deal_id, payload = deal.get("DealID", 0), deal.get("PayloadSize", 0)
        if not (isinstance(size, int) and isinstance(cid, str) and isinstance(deal_id, int) and isinstance(payload, int)):
            raise TypeError("wrong types")
    except (KeyError, TypeError, AttributeError) as exc:
        raise Perm(f"{where}: not a SectorPieceV2 {{Piece: {{Size, PieceCID}}, DealInfo}} ({exc}): {str(p)[:200]}") from None
    return {"id": deal_id, "piece_cid": cid, "piece_size": size, "payload_size": payload}


class SealerSteps:
    """exec(state) for the sealer plan. `rec` is the journaled sector record, read-only here: a
    step returns an Event carrying what it produced, and the runner writes it into the record
    with the transition."""

    def __init__(self, ctx):
        self.ctx = ctx   # WorkerContext: rpc, config, parent cache dir, attached stores, run_stage

    def sid(self, rec) -> dict:
        return {"Miner": rec.miner, "Number": rec.number}

    def paths(self, rec) -> Paths:
        return Paths(self.ctx.location, rec.name)

    def exec(self, rec) -> Event | str:
        handler = getattr(self, "on_" + rec.state, None)
        if handler is None:
            raise Crit(f"no step for state {rec.state}")
        return handler(rec)

    # ------------------------------------------------------------------ steps

    def on_Empty(self, rec):
        s = self.ctx.sealing
        spec = {"AllowedMiners": list(s.allowed_miners) if s.allowed_miners else None,
                "AllowedProofTypes": [seal_proof(5 + ["2KiB", "8MiB", "512MiB", "32GiB", "64GiB"].index(z)).id
                                      for z in s.allowed_sizes] if s.allowed_sizes else None}
        alloc = call(self.ctx.rpc, "Venus.AllocateSector", spec)
        if alloc is None:
            raise Wait("no sector allocated (idle)")
        sid = alloc["ID"]
        return Event("Allocate", {"miner": sid["Miner"], "number": sid["Number"], "proof": alloc["ProofType"],
                                  "name": sector_name(sid["Miner"], sid["Number"])})

    def on_Allocated(self, rec):
        s = self.ctx.sealing
        deals = None
        if s.enable_deals:
            deals = call(self.ctx.rpc, "Venus.AcquireDeals", self.sid(rec), {"MaxDeals": s.max_deals, "MinUsedSpace": s.min_deal_space})
            if not deals and s.disable_cc:
                raise Wait("no deals for this sector yet (disable_cc: no CC sectors)", polling=True)
        return Event("AcquireDeals", {"deals": [_sector_piece(p, f"AcquireDeals[{i}]") for i, p in enumerate(deals or [])]})

    def on_DealsAcquired(self, rec):
        p = self.paths(rec)
        p.make()
        files = [self._piece_file(p, d) for d in (rec.deals or [])]
        staged = stage_data.add_pieces_stage(self.ctx, seal_proof(rec.proof), files, rec.deals or [], p.staged)
        placed = []
        for d, sp in zip((rec.deals or []), staged):
            if sp.info.size != d["piece_size"] or commd_to_cid(sp.info.commitment) != d["piece_cid"]:
                raise Perm(f"deal {d['id']}: the piece file has CID {commd_to_cid(sp.info.commitment)} ({sp.info.size} padded "
                           f"bytes), the deal says {d['piece_cid']} ({d['piece_size']})")
            placed.append({**d, "offset": sp.offset})
        return Event("AddPiece", {"deals": placed})

    def _piece_file(self, p: Paths, deal: dict) -> Path:
        """A deal's piece: from a `local_pieces_dirs` directory, else downloaded from the
        manager's piece store (once; a partial download is never used)."""
        cid = deal["piece_cid"]
        for d in self.ctx.local_pieces_dirs:
            if (Path(d) / cid).is_file():
                return Path(d) / cid
        dest = p.pieces / cid
        if not dest.is_file():
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                self.ctx.rpc.download(f"/piecestore/{cid}", dest)
            except TransportError as exc:
                raise Unreachable(f"fetching piece {cid}: {exc}") from None
            except HTTPStatusError as exc:
                raise Perm(f"fetching piece {cid} for deal {deal['id']}: {exc}") from None
        return dest

    def on_PieceAdded(self, rec):
        p = self.paths(rec)
        proof = seal_proof(rec.proof)
        pieces = deal_pieces(rec.deals)
        try:
            comm_d = stage_data.tree_d_stage(self.ctx, proof, p.staged, p.cache, pieces)
        except ProofError as exc:
            raise Perm(f"tree_d: {exc}") from None
        if not pieces and comm_d != zero_comm(proof.size.bytes):
            raise Perm("tree_d of a CC sector is not the zero commitment")
        return Event("BuildTreeD", {"comm_d": comm_d.hex()})

    def on_TreeDBuilt(self, rec):
        return Event("AssignTicket", {"ticket": call(self.ctx.rpc, "Venus.AssignTicket", self.sid(rec))})

    def on_TicketAssigned(self, rec):
        p = self.paths(rec)
        proof = seal_proof(rec.proof)
        sector, ticket = SectorID(rec.miner, rec.number), base64.b64decode(rec.ticket["Ticket"])
        crash_point("worker.pc1.before")
        outputs = {}
        if self.ctx.external("pc1"):
            p.sealed.touch()     # rust-fil-proofs' pc1 wants out_path to be a file already
            task = stage_seal.pc1_task(proof, p.cache, p.staged, p.sealed, sector, ticket, deal_pieces(rec.deals),
                                       self.ctx.parent_cache)
            try:
                outputs["pc1out"] = stage_seal.read_pc1_output(self.ctx.run_task("pc1", task), proof,
                                                               bytes.fromhex(rec.comm_d))
            except tasks.TaskError as exc:
                raise Perm(f"pc1 processor: {exc}") from None
        else:
            rid = replica_id(sector, ticket, bytes.fromhex(rec.comm_d), proof)
            self.ctx.run_stage("pc1", generate_labels, proof, rid, p.cache, self.ctx.parent_cache)
        crash_point("worker.pc1.after")
        return Event("PC1", outputs)

    def on_PC1Done(self, rec):
        p = self.paths(rec)
        proof = seal_proof(rec.proof)
        if self.ctx.external("pc2"):
            out = self._external_pc2(rec, proof, p)
        else:
            out = self.ctx.run_stage("pc2", seal_pre_commit_phase2, proof, p.staged, p.cache, p.sealed, self.ctx.pc2_procs)
        crash_point("worker.pc2.after")
        comm_c, comm_r_last = read_p_aux(p.cache)    # cheap consistency check: the files say the same
        if (comm_c, comm_r_last) != (out.comm_c, out.comm_r_last) or p.sealed.stat().st_size != proof.size.bytes:
            raise Perm("PC2 output does not match its files (p_aux or sealed)")
        if self.ctx.sealing.verify_after_pc2:
            self._verify_after_pc2(rec, proof, p, out)
        (p.cache / PC2_RUNNING).unlink(missing_ok=True)
        return Event("PC2", {"comm_r": out.comm_r.hex()})

    def _external_pc2(self, rec, proof, p: Paths):
        """PC2 by an external processor, as Damocles' worker hands it out: the processor seals
        `sealed` (a copy of the data, made by pc1) in place, so a PC2 that started or finished
        before, or a sector whose PC1 ran in-process, gets a fresh copy of the data first; its
        comm_r must be Poseidon(comm_c, comm_r_last) of the p_aux it wrote."""
        comm_d = bytes.fromhex(rec.comm_d)
        # records journaled before the pc1 output was SealPreCommitPhase1Output (or PC1 in-process):
        # the output is what rust-fil-proofs would have answered for this cache
        pc1out = rec.pc1out if stage_seal.is_pc1out(rec.pc1out) else stage_seal.pc1_output(proof, p.cache, comm_d)
        marker = p.cache / PC2_RUNNING       # p_aux: a PC2 that finished (then a crash, or a resume at PC1Done)
        if marker.exists() or (p.cache / "p_aux").exists() or not p.sealed.is_file() or \
                p.sealed.stat().st_size != proof.size.bytes:
            stage_seal.copy_data(p.staged, p.sealed, proof.size.bytes)
        for f in p.cache.iterdir():      # no output of an earlier attempt may pass for this one's
            if f.name in ("p_aux", "t_aux") or "tree-c" in f.name or "tree-r-last" in f.name:
                f.unlink()
        marker.touch()
        try:
            comm_r = stage_seal.read_pc2_output(
                self.ctx.run_task("pc2", stage_seal.pc2_task(pc1out, p.cache, p.sealed, self.ctx.pc2_procs)), proof, comm_d)
            comm_c, comm_r_last = read_p_aux(p.cache)
        except (tasks.TaskError, ProofError) as exc:
            raise Perm(f"pc2 processor: {exc}") from None
        if hash_nodes([comm_c, comm_r_last]) != comm_r:
            raise Perm(f"pc2 processor: comm_r {comm_r.hex()} is not Poseidon(comm_c, comm_r_last) of its p_aux")
        return SimpleNamespace(comm_r=comm_r, comm_c=comm_c, comm_r_last=comm_r_last)

    def _verify_after_pc2(self, rec, proof, p: Paths, out) -> None:
        """`verify_after_pc2`: prove and verify the sector against a throw-away seed before
        paying for a PreCommit, so a replica that does not match its commitments never goes out."""
        import hashlib
        seed = hashlib.sha256(b"verify_after_pc2" + out.comm_r).digest()
        ticket = base64.b64decode(rec.ticket["Ticket"])
        sector = SectorID(rec.miner, rec.number)
        try:
            c1 = seal_commit_phase1(proof, sector, ticket, seed, bytes.fromhex(rec.comm_d), out.comm_c, out.comm_r_last,
                                    p.cache, p.sealed)
            verify_c1(c1, proof, sector, bytes.fromhex(rec.comm_d), out.comm_r, ticket, seed)
        except ProofError as exc:
            raise Perm(f"verify_after_pc2: the sealed sector does not prove: {exc}") from None

    def on_PC2Done(self, rec):
        info = {"CommR": list(bytes.fromhex(rec.comm_r)), "CommD": list(bytes.fromhex(rec.comm_d)), "Ticket": rec.ticket}
        res = call(self.ctx.rpc, "Venus.SubmitPreCommit", {"ID": self.sid(rec), "ProofType": rec.proof}, info,
                   rec.resubmit_pc)
        crash_point("worker.submit_pc.after")
        return self._submitted(res, "SubmitPC", "PreCommit", "resubmit_pc")

    def _submitted(self, res, event, what, flag):
        """The submission's answer; an accepted resubmission clears its flag with the transition."""
        code, desc = res["Res"], res.get("Desc")
        if code in (ACCEPTED, DUPLICATE):
            return Event(event, {flag: None})
        if code == REJECTED:
            raise Abort(f"{what} rejected: {desc}")
        raise Perm(f"{what} {'mismatched' if code == MISMATCHED else 'files missing' if code == FILES_MISSED else code}: {desc}")

    def _landed(self, res, what, resubmit_event, rec, flag):
        state, desc = res["State"], res.get("Desc")
        if state in (PENDING, PACKED):
            raise Wait(f"{what} not landed yet: {desc}", polling=True)
        if state == LANDED:
            return None
        if state == FAILED:
            return Event(resubmit_event, {flag: True})
        if state == SHOULD_ABORT:
            raise Abort(f"{what}: {desc}")
        raise Perm(f"{what} state {state}: {desc}")

    def on_PCSubmitted(self, rec):
        res = call(self.ctx.rpc, "Venus.PollPreCommitState", self.sid(rec))
        return self._landed(res, "PreCommit", "ReSubmitPC", rec, "resubmit_pc") or "CheckPC"

    def on_PCLanded(self, rec):
        p = self.paths(rec)
        size = 2 * seal_proof(rec.proof).size.bytes
        store = call(self.ctx.rpc, "Venus.StoreReserveSpace", self.sid(rec), size, [s.name for s in self.ctx.attached])
        if store is None:
            raise Wait("no persist store has room yet", polling=True)
        local = next((s for s in self.ctx.attached if s.name == store["Name"]), None)
        if local is None:
            raise Perm(f"the manager reserved store {store['Name']!r}, which is not attached here")
        crash_point("worker.persist.before")
        persist(p, local.location, rec.name, ctx=self.ctx)
        return Event("Persist", {"persist_store": local.name})

    def on_Persisted(self, rec):
        ok = call(self.ctx.rpc, "Venus.SubmitPersistedEx", self.sid(rec), rec.persist_store, False)
        if not ok:
            raise Perm(f"the manager does not find the persisted files in {rec.persist_store}")
        return "SubmitPersistance"

    def on_PersistanceSubmitted(self, rec):
        res = call(self.ctx.rpc, "Venus.WaitSeed", self.sid(rec), rec.proof)
        if res.get("Seed"):
            return Event("AssignSeed", {"seed": res["Seed"]})
        if res.get("ShouldWait"):
            crash_point("worker.seed.waiting")
            raise Wait("waiting for the seed", delay=float(res.get("Delay") or 1))
        raise Temp("the manager has no seed for this sector")

    def on_SeedAssigned(self, rec):
        p = self.paths(rec)
        proof = seal_proof(rec.proof)
        comm_c, comm_r_last = read_p_aux(p.cache)
        out = self.ctx.run_stage("c1", seal_commit_phase1, proof, SectorID(rec.miner, rec.number),
                                 base64.b64decode(rec.ticket["Ticket"]), base64.b64decode(rec.seed["Seed"]),
                                 bytes.fromhex(rec.comm_d), comm_c, comm_r_last, p.cache, p.sealed)
        atomic_write(p.cache / "c1.out", c1_json.dumps(out))    # what a rust-fil-proofs C2 reads
        return "C1"

    def on_C1Done(self, rec):
        p = self.paths(rec)
        proof = seal_proof(rec.proof)
        try:
            c1 = c1_json.read_c1((p.cache / "c1.out").read_bytes(), SectorID(rec.miner, rec.number), proof)
        except ProofError as exc:
            raise Perm(f"c1.out: {exc}") from None
        if self.ctx.external("c2"):
            try:
                c2 = c2_stage.read_c2_output(self.ctx.run_task("c2", c2_stage.c2_task(c1)))
            except tasks.TaskError as exc:
                raise Perm(f"c2 processor: {exc}") from None
        else:
            c2 = self.ctx.run_stage("c2", seal_commit_phase2, c1)
        try:
            if is_builtin_proof("seal", c2):
                verify_seal(proof, SectorID(rec.miner, rec.number), bytes.fromhex(rec.comm_d), bytes.fromhex(rec.comm_r),
                            base64.b64decode(rec.ticket["Ticket"]), base64.b64decode(rec.seed["Seed"]), c2)
            else:      # a real SNARK from an external c2: submitted as it is, the chain decides
                proof_form("seal", c2, proof.size.porep_partitions)
                log.info("sector %d-%d: the c2 processor's Groth16 proof (%d bytes) is not verified here", rec.miner,
                         rec.number, len(c2))
        except ProofError as exc:
            raise Perm(f"C2 proof does not verify: {exc}") from None
        atomic_write(p.cache / "proof.out", c2)
        return "C2"

    def on_C2Done(self, rec):
        p = self.paths(rec)
        proof = base64.b64encode((p.cache / "proof.out").read_bytes()).decode()
        res = call(self.ctx.rpc, "Venus.SubmitProof", self.sid(rec), {"Proof": proof}, rec.resubmit_proof)
        crash_point("worker.submit_proof.after")
        return self._submitted(res, "SubmitProof", "proof", "resubmit_proof")

    def on_ProofSubmitted(self, rec):
        if self.ctx.sealing.ignore_proof_check:
            return "Finish"
        res = call(self.ctx.rpc, "Venus.PollProofState", self.sid(rec))
        return self._landed(res, "proof", "ReSubmitProof", rec, "resubmit_proof") or "Finish"

