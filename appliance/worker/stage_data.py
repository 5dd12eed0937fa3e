"""The data stages over vc-processors: add_pieces, tree_d, transfer and unseal.

Task and output shapes are those of Damocles' vc-processors (damocles-worker/vc-processors/src/
builtin/tasks.rs) as serde writes them: structs as objects with their field names, proof types by
variant name, `[u8; 32]` as arrays of numbers, UnpaddedBytesAmount / SectorId as plain numbers,
PieceFile as `"pledge"`, `{"local": path}` or `{"url": url}` (rename_all = "camelCase").
Here are (1) the builtin runners behind `damocles processor <stage>`, doing what vc-processors'
builtin processors do, and (2) the worker's side: each task built as Damocles' worker builds it
and every answer checked field by field. synth_proof is not among them: vc-processors has no task
for it (Damocles' worker computes it in the sealing thread) and this engine does no synthetic
PoRep."""

from __future__ import annotations

import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..core.files import atomic_output, atomic_write
from ..core.proof_types import SealProofType
from ..core.sector import SectorID
from ..proofs import ProofError
from ..proofs.addpiece import StagedPiece, add_pieces, build_tree_d
from ..proofs.commitment import PieceInfo, hash_pair, root_of_padded, zero_comm
from ..proofs.fr32 import is_valid_unpadded_piece_size, pad, padded_size, unpadded_size
from ..proofs.store import TREE_D
from .failure import Perm
from .task_fields import (TaskError, array as _list, b32 as _b32, boolean as _bool, obj as _obj, path as _path,
                          sector_of as _sector, seal_proof_name as _proof, u64 as _int)

STAGES = ("add_pieces", "tree_d", "transfer", "unseal")
CHUNK_UNPADDED = 127 * 8192          # a piece is read, padded and hashed 1 MiB (padded) at a time


# --------------------------------------------------------------------------------- fields

















# ------------------------------------------------------------------------- add_pieces

@dataclass(frozen=True)
class PieceSpec:
    kind: str               # pledge | local | url
    where: str | None       # the path or URL
    payload_size: int
    piece_size: int         # unpadded


def _piece_spec(p, field: str) -> PieceSpec:
    p = _obj(p, field)
    f = p.get("piece_file")
    if f == "pledge":
        kind, where = "pledge", None
    elif isinstance(f, dict) and len(f) == 1 and next(iter(f)) in ("local", "url") and isinstance(next(iter(f.values())), str):
        kind, where = next(iter(f.items()))
    else:
        raise TaskError(f"{field}.piece_file: expected \"pledge\", {{\"local\": path}} or {{\"url\": url}}, got {f!r}")
    size = _int(p.get("piece_size"), f"{field}.piece_size")
    if not is_valid_unpadded_piece_size(size):
        raise TaskError(f"{field}.piece_size: {size} is not an unpadded piece size (127·2^k bytes, at least 127)")
    payload = _int(p.get("payload_size"), f"{field}.payload_size")
    if payload > size:
        raise TaskError(f"{field}.payload_size: {payload} is larger than piece_size {size}")
    return PieceSpec(kind, where, payload, size)


class _TokenOnRedirect(urllib.request.HTTPRedirectHandler):
    """vc-processors' piece fetcher sends PIECE_FETCHER_TOKEN only to the place a piece URL redirects to."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        token = os.environ.get("PIECE_FETCHER_TOKEN")
        if new is not None and token:
            new.add_header("Authorization", f"Bearer {token}")
            new.add_header("X-VENUS-API-NAMESPACE", "v1.IMarket")
        return new


def _open_piece(spec: PieceSpec, field: str):
    try:
        if spec.kind == "local":
            return open(spec.where, "rb")
        return urllib.request.build_opener(_TokenOnRedirect()).open(spec.where, timeout=60)
    except (OSError, ValueError) as exc:      # urllib's HTTPError and URLError are OSErrors
        raise TaskError(f"{field}.piece_file: cannot open {spec.where}: {exc}") from None


def _read_exactly(src, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        b = src.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def _write_piece(src, spec: PieceSpec, out, field: str) -> bytes:
    """Write the piece fr32-padded (its payload, then zeros up to piece_size) and return its
    commitment, in bounded memory."""
    stack: list[tuple[int, bytes]] = []
    produced, remaining = 0, spec.payload_size
    while produced < spec.piece_size:
        take = min(CHUNK_UNPADDED, spec.piece_size - produced)
        want = min(take, remaining)
        data = _read_exactly(src, want) if src is not None else bytes(want)
        if len(data) != want:
            raise TaskError(f"{field}.payload_size: {spec.where} ended after {spec.payload_size - remaining + len(data)} "
                            f"of its {spec.payload_size} payload bytes")
        remaining -= want
        produced += take
        padded = pad(data + bytes(take - want))
        out.write(padded)
        stack.append((len(padded), root_of_padded(padded)))
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
            (s, b), (_, a) = stack.pop(), stack.pop()
            stack.append((2 * s, hash_pair(a, b)))
    return stack[0][1]


def run_add_pieces(task: dict) -> list[dict]:
    """vc-processors' AddPieces: each piece written in order, fr32-padded, with no alignment of
    its own (the task's pledge pieces align them); no pieces: a CC sector of zeros and the one
    PieceInfo of its zero commitment. Output: Vec<PieceInfo> {commitment, size (unpadded)}."""
    proof = _proof(task.get("seal_proof_type"), "task.seal_proof_type")
    specs = [_piece_spec(p, f"task.pieces[{i}]") for i, p in enumerate(_list(task.get("pieces"), "task.pieces"))]
    staged = _path(task.get("staged_filepath"), "task.staged_filepath")
    total = sum(padded_size(s.piece_size) for s in specs)
    if total > proof.size.bytes:
        raise TaskError(f"task.pieces: {total} padded bytes do not fit in a {proof.size.name} sector")
    out: list[dict] = []
    try:
        with atomic_output(staged) as tmp, open(tmp, "wb") as f:
            if not specs:
                f.truncate(proof.size.bytes)
                out.append({"commitment": list(zero_comm(proof.size.bytes)), "size": proof.size.unpadded_bytes})
            for i, spec in enumerate(specs):
                src = _open_piece(spec, f"task.pieces[{i}]") if spec.kind != "pledge" else None
                try:
                    comm = _write_piece(src, spec, f, f"task.pieces[{i}]")
                finally:
                    if src is not None:
                        src.close()
                out.append({"commitment": list(comm), "size": spec.piece_size})
    except OSError as exc:
        raise TaskError(f"task.staged_filepath: cannot write {staged}: {exc.strerror or exc}") from None
    return out


def damocles_pieces(size_bytes: int, files: list[tuple[Path, int]]) -> tuple[list[dict], list[int]]:
    """The AddPieces `pieces` for deal files [(path, padded piece size)], as a Damocles manager
    hands them out: pledge pieces before each deal align it to its size, and after the last they
    fill the sector. Returns the pieces and, per deal, the index of its piece."""
    pieces, where, pos = [], [], 0

    def fill(to: int) -> None:
        nonlocal pos
        while pos < to:
            p = pos & -pos if pos else to
            while pos + p > to:
                p //= 2
            pieces.append({"piece_file": "pledge", "payload_size": 0, "piece_size": unpadded_size(p)})
            pos += p

    for path, size in files:
        fill(-(-pos // size) * size)
        if pos + size > size_bytes:
            raise Perm(f"piece {path.name} ({size} padded bytes at offset {pos}) does not fit in the sector")
        payload = path.stat().st_size
        if payload > unpadded_size(size):
            raise Perm(f"piece {path.name} has {payload} bytes, more than its deal's piece size {size} holds")
        where.append(len(pieces))
        pieces.append({"piece_file": {"local": str(path)}, "payload_size": payload, "piece_size": unpadded_size(size)})
        pos += size
    if files:
        fill(size_bytes)
    return pieces, where


def add_pieces_stage(ctx, proof: SealProofType, files: list[Path], deals: list[dict], staged: Path) -> list[StagedPiece]:
    """The add_pieces stage for a plan: an external processor when `[[processors.add_pieces]]`
    has `bin` (Damocles' task, its answer checked piece by piece against the `deals`, the
    journal's {id, piece_cid, piece_size (padded)} of each file), else the builtin engine."""
    if not ctx.external("add_pieces"):
        return ctx.run_stage("add_pieces", add_pieces, proof.size, files, staged)
    from ..proofs.cid import cid_to_commitment
    pieces, where = damocles_pieces(proof.size.bytes, [(f, d["piece_size"]) for f, d in zip(files, deals)])
    task = {"seal_proof_type": proof.name, "pieces": pieces, "staged_filepath": str(staged)}
    out = ctx.run_task("add_pieces", task)
    expect = pieces or [{"piece_file": "pledge", "piece_size": proof.size.unpadded_bytes}]   # CC: the whole sector
    if not isinstance(out, list) or len(out) != len(expect):
        raise Perm(f"add_pieces output: expected an array of {len(expect)} PieceInfo, got {str(out)[:200]}")
    infos = []
    for i, (asked, got) in enumerate(zip(expect, out)):
        try:
            got = _obj(got, f"add_pieces output[{i}]")
            comm = _b32(got.get("commitment"), f"add_pieces output[{i}].commitment")
            size = _int(got.get("size"), f"add_pieces output[{i}].size")
        except TaskError as exc:
            raise Perm(str(exc)) from None
        if size != asked["piece_size"]:
            raise Perm(f"add_pieces output[{i}].size: {size}, the task asked for {asked['piece_size']} (unpadded)")
        if asked["piece_file"] == "pledge" and comm != zero_comm(padded_size(size)):
            raise Perm(f"add_pieces output[{i}].commitment: not the zero commitment of a {padded_size(size)}-byte pledge piece")
        infos.append(PieceInfo(padded_size(size), comm))
    for k, d in zip(where, deals):
        if infos[k].commitment != cid_to_commitment(d["piece_cid"])[1]:
            raise Perm(f"add_pieces output[{k}].commitment: not the commitment of deal {d['id']}'s piece {d['piece_cid']}")
    if not staged.is_file() or staged.stat().st_size != proof.size.bytes:
        have = staged.stat().st_size if staged.is_file() else "no"
        raise Perm(f"add_pieces: staged file {staged} has {have} bytes, expected {proof.size.bytes}")
    offsets = [sum(padded_size(p["piece_size"]) for p in pieces[:k]) for k in where]
    return [StagedPiece(infos[k], pieces[k]["payload_size"], off) for k, off in zip(where, offsets)]


# ---------------------------------------------------------------------------------- tree_d

def run_tree_d(task: dict) -> bool:
    """vc-processors' TreeD: the binary sha256 tree over the staged file, kept whole, as
    `sc-02-data-tree-d.dat` in cache_dir (rows bottom-up, the root last). Output: true."""
    proof = _proof(task.get("registered_proof"), "task.registered_proof")
    staged = _path(task.get("staged_file"), "task.staged_file")
    cache = _path(task.get("cache_dir"), "task.cache_dir")
    if not staged.is_file():
        raise TaskError(f"task.staged_file: {staged} does not exist")
    if not cache.is_dir():
        raise TaskError(f"task.cache_dir: {cache} is not a directory")
    try:
        build_tree_d(proof.size, staged, cache)
    except ProofError as exc:
        raise TaskError(f"task.staged_file: {exc}") from None
    return True


def tree_d_stage(ctx, proof: SealProofType, staged: Path, cache: Path, pieces: list[PieceInfo]) -> bytes:
    """The tree_d stage for a plan; returns comm_d. Externally: Damocles' TreeD task, whose
    answer must be `true` and whose tree file must have the size and root the pieces give."""
    if not ctx.external("tree_d"):
        return ctx.run_stage("tree_d", build_tree_d, proof.size, staged, cache, pieces)
    from ..proofs.commitment import comm_d_from_pieces
    out = ctx.run_task("tree_d", {"registered_proof": proof.name, "staged_file": str(staged), "cache_dir": str(cache)})
    if out is not True:
        raise Perm(f"tree_d output: expected true, got {str(out)[:100]}")
    tree, want = cache / TREE_D, 2 * proof.size.bytes - 32
    if not tree.is_file() or tree.stat().st_size != want:
        raise Perm(f"tree_d: {tree} {'has ' + str(tree.stat().st_size) + ' bytes' if tree.is_file() else 'is missing'}, "
                   f"expected {want} (the whole tree)")
    with open(tree, "rb") as f:
        f.seek(want - 32)
        root = f.read(32)
    expected = comm_d_from_pieces(pieces, proof.size.bytes)
    if root != expected:
        raise Perm(f"tree_d: the root of {tree} is {root.hex()}, the pieces give comm_d {expected.hex()}")
    return root


# -------------------------------------------------------------------------------- transfer

@dataclass(frozen=True)
class Route:
    src: Path
    dest: Path
    allow_link: bool


def _item(v, field: str, stores: dict) -> Path:
    v = _obj(v, field)
    name = v.get("store_name")
    if name is not None and (not isinstance(name, str) or name not in stores):
        raise TaskError(f"{field}.store_name: {name!r} is not one of the task's stores ({', '.join(stores) or 'none'})")
    uri = _path(v.get("uri"), f"{field}.uri")
    if not uri.is_absolute():
        raise TaskError(f"{field}.uri: {uri} is relative; store entries are absolute paths")
    return uri


def _route(v, field: str, stores: dict) -> Route:
    v = _obj(v, field)
    opt = v.get("opt")
    if opt is not None:
        opt = _obj(opt, f"{field}.opt")
        _bool(opt.get("is_dir"), f"{field}.opt.is_dir")
        _bool(opt.get("allow_link"), f"{field}.opt.allow_link")
    return Route(_item(v.get("src"), f"{field}.src", stores), _item(v.get("dest"), f"{field}.dest", stores),
                 bool(opt and opt["allow_link"]))


def links_disabled() -> bool:
    """`DISABLE_LINK` as Damocles' transfer processor reads it (clap's boolish flag from the env)."""
    return os.environ.get("DISABLE_LINK", "").strip().lower() not in ("", "0", "n", "no", "f", "false", "off")


def run_transfer(task: dict) -> bool:
    """vc-processors' Transfer: each route's src (a file or a directory) to its dest, replacing a
    dest of the same kind; a symlink where opt.allow_link (unless DISABLE_LINK), else a copy, each
    file under a temporary name, verified, then renamed. Every route is checked before any is
    done. Output: true."""
    stores = _obj(task.get("stores"), "task.stores")
    for k, s in stores.items():
        s = _obj(s, f"task.stores.{k}")
        if s.get("name") != k:
            raise TaskError(f"task.stores.{k}.name: {s.get('name')!r}, expected {k!r}")
        meta = s.get("meta")
        if meta is not None and not (isinstance(meta, dict) and all(isinstance(x, str) for x in meta.values())):
            raise TaskError(f"task.stores.{k}.meta: expected null or an object of strings")
    routes = [_route(r, f"task.routes[{i}]", stores) for i, r in enumerate(_list(task.get("routes"), "task.routes"))]
    link = not links_disabled()
    for i, r in enumerate(routes):
        try:
            _transfer(r, f"task.routes[{i}]", link)
        except OSError as exc:
            raise TaskError(f"task.routes[{i}]: {r.src} to {r.dest}: {exc}") from None
    return True


def _transfer(r: Route, field: str, link_ok: bool) -> None:
    from .failure import Temp
    from .persist import copy_verified
    if not r.src.exists():
        raise TaskError(f"{field}.src.uri: {r.src} does not exist")
    src_dir = r.src.is_dir()
    if os.path.lexists(r.dest):
        if r.dest.is_symlink():
            r.dest.unlink()
        elif r.dest.is_dir() != src_dir:
            raise TaskError(f"{field}.dest.uri: {r.dest} exists and is {'not ' if src_dir else ''}a directory, unlike the src")
        elif src_dir:
            shutil.rmtree(r.dest)
        else:
            r.dest.unlink()
    r.dest.parent.mkdir(parents=True, exist_ok=True)
    if r.allow_link and link_ok:
        r.dest.symlink_to(r.src)
        return
    files = [(r.src, r.dest)] if not src_dir else \
        [(f, r.dest / f.relative_to(r.src)) for f in sorted(r.src.rglob("*")) if f.is_file()]
    if src_dir:
        r.dest.mkdir()
    try:
        for s, d in files:
            copy_verified(s, d, d.parent)
    except Temp as exc:
        raise TaskError(f"{field}: {exc}") from None


def transfer_stage(ctx, files: list[tuple[Path, Path]], store: Path) -> None:
    """Persist `files` [(local file, its place in the persist store at `store`)] through the
    external transfer processor, routes as Damocles' worker builds them (src local, dest in the
    named store, no links); the answer must be `true` and every file must then be in the store
    with its size."""
    name = next((a.name for a in getattr(ctx, "attached", ()) if Path(a.location) == Path(store)), Path(store).name)
    routes = [{"src": {"store_name": None, "uri": str(s)}, "dest": {"store_name": name, "uri": str(d)}, "opt": None}
              for s, d in files]
    out = ctx.run_task("transfer", {"stores": {name: {"name": name, "meta": None}}, "routes": routes})
    if out is not True:
        raise Perm(f"transfer output: expected true, got {str(out)[:100]}")
    for s, d in files:
        if not d.is_file() or d.stat().st_size != s.stat().st_size:
            raise Perm(f"transfer answered true but {d} is {'missing' if not d.is_file() else 'not the size of ' + str(s)}")


# ---------------------------------------------------------------------------------- unseal

def run_unseal(task: dict) -> int:
    """vc-processors' Unseal: the key regenerated from the sector's replica_id and taken off the
    replica, num_bytes unpadded bytes from offset written to unsealed_output. Output: the bytes
    written (UnpaddedBytesAmount). The parent cache is found as rust-fil-proofs finds it
    ($FIL_PROOFS_PARENT_CACHE); the key's layers go beside unsealed_output and are removed."""
    from ..proofs.unseal import unseal_range
    proof = _proof(task.get("registered_proof"), "task.registered_proof")
    sector = _sector(_b32(task.get("prover_id"), "task.prover_id"), _int(task.get("sector_id"), "task.sector_id"),
                     "task.prover_id")
    comm_d = _b32(task.get("comm_d"), "task.comm_d")
    if comm_d == bytes(32):
        raise TaskError("task.comm_d: an all-zero commitment")
    ticket = _b32(task.get("ticket"), "task.ticket")
    _path(task.get("cache_dir"), "task.cache_dir")
    sealed = _path(task.get("sealed_file"), "task.sealed_file")
    out = _path(task.get("unsealed_output"), "task.unsealed_output")
    offset, num = _int(task.get("offset"), "task.offset"), _int(task.get("num_bytes"), "task.num_bytes")
    if offset % 127:
        raise TaskError(f"task.offset: {offset} is not at the start of an fr32 quad (a multiple of 127)")
    if num == 0 or offset + num > proof.size.unpadded_bytes:
        raise TaskError(f"task.num_bytes: {num} bytes from offset {offset} are not inside the {proof.size.unpadded_bytes} "
                        f"unpadded bytes of a {proof.size.name} sector")
    if not sealed.is_file():
        raise TaskError(f"task.sealed_file: {sealed} does not exist")
    if not out.parent.is_dir():
        raise TaskError(f"task.unsealed_output: {out.parent} is not a directory")
    try:
        data = unseal_range(proof, sector, ticket, comm_d, sealed, offset, -(-num // 127) * 127, None, out.parent)
    except ProofError as exc:      # a key that is not this replica's leaves values fr32 cannot hold
        raise TaskError(f"task.sealed_file: {sealed} does not decode with this prover_id, sector_id, ticket and "
                        f"comm_d ({exc})") from None
    atomic_write(out, data[:num])
    return num


def unseal_stage(ctx, proof: SealProofType, sector: SectorID, ticket: bytes, comm_d: bytes, store: Path, name: str,
                 offset: int, size: int, scratch: Path) -> bytes:
    """The piece's `size` bytes at unpadded `offset` through the external unseal processor:
    Damocles' Unseal task (sealed file and cache in the persist store, output in `scratch`); the
    answer must be the byte count asked and the file must hold exactly that many."""
    out_file = scratch / f"{name}-{offset}-{size}.unsealed"
    task = {"registered_proof": proof.name, "prover_id": list(sector.prover_id), "sector_id": sector.number,
            "comm_d": list(comm_d), "ticket": list(ticket), "cache_dir": str(store / "cache" / name),
            "sealed_file": str(store / "sealed" / name), "unsealed_output": str(out_file), "offset": offset, "num_bytes": size}
    try:
        out = ctx.run_task("unseal", task)
        if isinstance(out, bool) or out != size:
            raise ValueError(f"unseal output: {str(out)[:100]} bytes, the task asked for {size}")
        data = out_file.read_bytes() if out_file.is_file() else None
        if data is None or len(data) != size:
            raise ValueError(f"unseal: {out_file} holds {'nothing' if data is None else len(data)} bytes, expected {size}")
        return data
    finally:
        out_file.unlink(missing_ok=True)


RUNNERS = {"add_pieces": run_add_pieces, "tree_d": run_tree_d, "transfer": run_transfer, "unseal": run_unseal}


def run(stage: str, task: dict):
    """`damocles processor <stage>` for the data stages."""
    return RUNNERS[stage](_obj(task, "task"))
