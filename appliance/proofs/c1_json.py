"""The C1 output as filecoin-proofs-api's `SealCommitPhase1Output`, in serde JSON, both ways.

This is what a rust-fil-proofs C2 (Damocles' `c2` processor, `seal_commit_phase2`) reads, so our
C1 output can go to a real SNARK. The shapes follow (see docs/formats.md for the field table):
- filecoin-proofs-api src/seal.rs: `SealCommitPhase1Output {registered_proof, vanilla_proofs,
  comm_r, comm_d, replica_id, seed, ticket}`, `VanillaSealProof` (externally tagged, one
  variant per sector size) around partitions x challenges of
- storage-proofs-porep stacked/vanilla/params.rs `Proof {comm_d_proofs, comm_r_last_proof,
  replica_column_proofs {c_x, drg_parents, exp_parents}, labeling_proofs, encoding_proof}`,
  column_proof.rs `{column, inclusion_proof}`, column.rs `{index, rows, _h: null}`,
  labeling_proof.rs / encoding_proof.rs `{parents, layer_index, node}`;
- storage-proofs-core merkle/proof.rs `MerkleProof {data: {"Single" | "Sub" | "Top": ...}}`,
  `InclusionPath {path: [PathElement {hashes, index}]}`;
- every 32-byte value (PoseidonDomain, Sha256Domain, Commitment, Ticket) an array of 32 numbers.

The JSON carries no sector id: readers take it from the task (prover_id, sector_id) and check the
stated replica_id against it. Labeling and encoding proofs repeat column labels; a reader
requires them to be exactly what the columns imply, so nothing in the file goes unchecked."""

from __future__ import annotations

import copy
import json
from typing import Any

from ..core.proof_types import SealProofType, seal_proof
from ..core.sector import SectorID
from . import ProofError
from .field import MODULUS
from .merkle import MerkleProof
from .pc1 import replica_id
from .porep import C1_MAGIC, C1Output, ChallengeProof, Column, decode_c1, label_parents
from .store import shape_of

WHAT = "C1 output"


def rust_proof_name(proof: SealProofType) -> str:
    """RegisteredSealProof variant name (filecoin-proofs-api src/registry.rs)."""
    return proof.name.replace("_Feat_NiPoRep", "_Feat_NonInteractivePoRep")


def vanilla_variant(proof: SealProofType) -> str:
    """VanillaSealProof variant: one per sector size, whatever the api version (seal.rs from_raw)."""
    return f"StackedDrg{proof.size.name}V1"


# ------------------------------------------------------------------------------- writing

def _arr(b: bytes) -> list[int]:
    return list(b)


def _path_elements(proof: MerkleProof, arities: list[int]) -> list[dict]:
    out, idx = [], proof.index
    for arity, siblings in zip(arities, proof.path):
        out.append({"hashes": [_arr(s) for s in siblings], "index": idx % arity})
        idx //= arity
    return out


def _merkle(proof: MerkleProof, root: bytes, arities: list[int], sub: int, top: int) -> dict:
    """MerkleProof: Single for a plain tree, Sub / Top when the shape has those levels."""
    elems = _path_elements(proof, arities)
    leaf, root = _arr(proof.leaf), _arr(root)
    if top:
        return {"data": {"Top": {"base_proof": {"path": elems[:-2]}, "sub_proof": {"path": [elems[-2]]},
                                 "top_proof": {"path": [elems[-1]]}, "root": root, "leaf": leaf}}}
    if sub:
        return {"data": {"Sub": {"base_proof": {"path": elems[:-1]}, "sub_proof": {"path": [elems[-1]]},
                                 "root": root, "leaf": leaf}}}
    return {"data": {"Single": {"root": root, "leaf": leaf, "path": {"path": elems}}}}


def _label_proofs(cp: ChallengeProof, layers: int) -> list[dict]:
    """What rust-fil-proofs' Proof::from_parts derives from the columns (params.rs)."""
    out = []
    for layer in range(1, layers + 1):
        base = [col.rows[layer - 1] for col in cp.drg_parents]
        exp = [col.rows[layer - 2] for col in cp.exp_parents] if layer > 1 else []
        out.append({"parents": [_arr(p) for p in label_parents(layer, base, exp)], "layer_index": layer,
                    "node": cp.challenge})
    return out


def to_json(out: C1Output) -> dict:
    """The SealCommitPhase1Output object of a C1 output."""
    proof = out.proof_type
    shape = shape_of(proof)
    r_ar, d_ar = shape.arities, [2] * (proof.size.nodes.bit_length() - 1)

    def r_merkle(p: MerkleProof, root: bytes) -> dict:
        return _merkle(p, root, r_ar, shape.sub, shape.top)

    def column(col: Column) -> dict:
        return {"column": {"index": col.proof.index, "rows": [_arr(r) for r in col.rows], "_h": None},
                "inclusion_proof": r_merkle(col.proof, out.comm_c)}

    def challenge(cp: ChallengeProof) -> dict:
        labeling = _label_proofs(cp, proof.size.layers)
        return {"comm_d_proofs": _merkle(cp.data, out.comm_d, d_ar, 0, 0),
                "comm_r_last_proof": r_merkle(cp.replica, out.comm_r_last),
                "replica_column_proofs": {"c_x": column(cp.node), "drg_parents": [column(c) for c in cp.drg_parents],
                                          "exp_parents": [column(c) for c in cp.exp_parents]},
                "labeling_proofs": labeling,
                "encoding_proof": copy.deepcopy(labeling[-1])}

    return {"registered_proof": rust_proof_name(proof),
            "vanilla_proofs": {vanilla_variant(proof): [[challenge(cp) for cp in part] for part in out.partitions]},
            "comm_r": _arr(out.comm_r), "comm_d": _arr(out.comm_d),
            "replica_id": _arr(replica_id(out.sector, out.ticket, out.comm_d, proof)),
            "seed": _arr(out.seed), "ticket": _arr(out.ticket)}


def dumps(out: C1Output) -> bytes:
    return json.dumps(to_json(out), separators=(",", ":")).encode()


# ------------------------------------------------------------------------------- reading

def _fail(field: str, msg: str):
    raise ProofError(f"{WHAT}: {field}: {msg}" if field else f"{WHAT}: {msg}")


def _field(obj: Any, key: str, where: str) -> Any:
    """A required member of a JSON object (serde refuses a missing field; unknown ones it ignores)."""
    if not isinstance(obj, dict):
        _fail(where, "expected an object")
    if key not in obj:
        _fail(f"{where}.{key}" if where else key, "missing")
    return obj[key]


def _uint(v: Any, field: str, limit: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < limit:
        _fail(field, f"expected an integer 0..{limit - 1}, got {v!r}")
    return v


def _list(v: Any, field: str, length: int | None = None) -> list:
    if not isinstance(v, list):
        _fail(field, "expected an array")
    if length is not None and len(v) != length:
        _fail(field, f"expected {length} elements, got {len(v)}")
    return v


def _bytes32(v: Any, field: str) -> bytes:
    if not isinstance(v, list) or len(v) != 32 or not all(type(x) is int and 0 <= x <= 255 for x in v):
        _fail(field, "expected an array of 32 integers 0..255")
    return bytes(v)


def _fr(v: Any, field: str) -> bytes:
    """A PoseidonDomain: the little-endian repr of a canonical BLS12-381 scalar."""
    b = _bytes32(v, field)
    if int.from_bytes(b, "little") >= MODULUS:
        _fail(field, "not a canonical field element")
    return b


def _sha(v: Any, field: str) -> bytes:
    """A Sha256Domain of tree_d (sha256-trunc254: the top two bits are clear)."""
    b = _bytes32(v, field)
    if b[31] & 0xC0:
        _fail(field, "not a 254-bit sha256-trunc254 node")
    return b


def _read_path(v: Any, field: str, arities: list[int], node) -> tuple[list[list[bytes]], int]:
    """An InclusionPath: the siblings per level and the index it opens (path_index)."""
    elems = _list(_field(v, "path", field), f"{field}.path", len(arities))
    path, index, scale = [], 0, 1
    for lv, (e, arity) in enumerate(zip(elems, arities)):
        f = f"{field}.path[{lv}]"
        hashes = _list(_field(e, "hashes", f), f"{f}.hashes", arity - 1)
        path.append([node(h, f"{f}.hashes[{j}]") for j, h in enumerate(hashes)])
        index += _uint(_field(e, "index", f), f"{f}.index", arity) * scale
        scale *= arity
    return path, index


def _read_merkle(v: Any, field: str, arities: list[int], sub: int, top: int, node) -> tuple[MerkleProof, bytes]:
    """(the opening, its stated root); the ProofData variant must be the shape's."""
    data = _field(v, "data", field)
    want = "Top" if top else "Sub" if sub else "Single"
    if not isinstance(data, dict) or list(data) != [want]:
        _fail(f"{field}.data", f"expected {{\"{want}\": ...}} for this tree shape, got {str(data)[:60]}")
    body, f = data[want], f"{field}.data.{want}"
    if want == "Single":
        path, index = _read_path(_field(body, "path", f), f"{f}.path", arities, node)
    else:
        n_base = len(arities) - (2 if top else 1)
        path, index = _read_path(_field(body, "base_proof", f), f"{f}.base_proof", arities[:n_base], node)
        upper = [("sub_proof", arities[n_base])] + ([("top_proof", arities[n_base + 1])] if top else [])
        scale = 1
        for a in arities[:n_base]:
            scale *= a
        for name, arity in upper:
            more, i = _read_path(_field(body, name, f), f"{f}.{name}", [arity], node)
            path += more
            index += i * scale
            scale *= arity
    leaf = node(_field(body, "leaf", f), f"{f}.leaf")
    root = node(_field(body, "root", f), f"{f}.root")
    return MerkleProof(index, leaf, path), root


def _expect_root(got: bytes, want: bytes, field: str, what: str) -> None:
    if got != want:
        _fail(field, f"root {got.hex()} is not {what} {want.hex()}")


def from_json(obj: Any, sector: SectorID, expected: SealProofType | None = None) -> C1Output:
    """Parse a SealCommitPhase1Output of `sector` (its id is not in the JSON; the replica_id is
    checked against it). With `expected`, the proof type must be that one. Every field is checked
    for shape and consistency; the Merkle paths are hashed by verify_c1, not here."""
    name = _field(obj, "registered_proof", "")
    try:
        proof = seal_proof(name) if isinstance(name, str) else None
    except ValueError:
        proof = None
    if proof is None or rust_proof_name(proof) != name:
        _fail("registered_proof", f"unknown RegisteredSealProof {name!r}")
    if expected is not None and proof.id != expected.id:
        _fail("registered_proof", f"{name}, expected {rust_proof_name(expected)}")
    comm_r, comm_d = _fr(_field(obj, "comm_r", ""), "comm_r"), _sha(_field(obj, "comm_d", ""), "comm_d")
    rid = _fr(_field(obj, "replica_id", ""), "replica_id")
    seed, ticket = _bytes32(_field(obj, "seed", ""), "seed"), _bytes32(_field(obj, "ticket", ""), "ticket")
    if rid != replica_id(sector, ticket, comm_d, proof):
        _fail("replica_id", f"is not the replica id of sector {sector} with this ticket and comm_d")

    variants = _field(obj, "vanilla_proofs", "")
    want = vanilla_variant(proof)
    if not isinstance(variants, dict) or list(variants) != [want]:
        _fail("vanilla_proofs", f"expected {{\"{want}\": [...]}} for {name}")
    n_parts, per = proof.size.porep_partitions, proof.size.porep_challenges_per_partition
    shape = shape_of(proof)
    r_ar, d_ar = shape.arities, [2] * (proof.size.nodes.bit_length() - 1)
    layers, n = proof.size.layers, proof.size.nodes
    roots: dict[str, bytes] = {}

    def same_root(key: str, root: bytes, field: str) -> bytes:
        """comm_c and comm_r_last are the roots every opening of their tree states."""
        if roots.setdefault(key, root) != root:
            _expect_root(root, roots[key], field, key)
        return root

    def column(v: Any, field: str) -> Column:
        col = _field(v, "column", field)
        index = _uint(_field(col, "index", f"{field}.column"), f"{field}.column.index", min(n, 1 << 32))
        rows = [_fr(r, f"{field}.column.rows[{i}]")
                for i, r in enumerate(_list(_field(col, "rows", f"{field}.column"), f"{field}.column.rows", layers))]
        if _field(col, "_h", f"{field}.column") is not None:
            _fail(f"{field}.column._h", "expected null (PhantomData)")
        mp, root = _read_merkle(_field(v, "inclusion_proof", field), f"{field}.inclusion_proof", r_ar, shape.sub,
                                shape.top, _fr)
        if mp.index != index:
            _fail(f"{field}.inclusion_proof", f"opens node {mp.index}, the column is of node {index}")
        same_root("comm_c", root, f"{field}.inclusion_proof")
        return Column(rows, mp)

    def challenge(v: Any, field: str) -> ChallengeProof:
        rcp = _field(v, "replica_column_proofs", field)
        f = f"{field}.replica_column_proofs"
        c_x = column(_field(rcp, "c_x", f), f"{f}.c_x")
        drg = [column(c, f"{f}.drg_parents[{j}]") for j, c in enumerate(_list(_field(rcp, "drg_parents", f), f"{f}.drg_parents", 6))]
        exp = [column(c, f"{f}.exp_parents[{j}]") for j, c in enumerate(_list(_field(rcp, "exp_parents", f), f"{f}.exp_parents", 8))]
        node = c_x.proof.index          # Proof::from_parts takes the challenge from c_x
        data, d_root = _read_merkle(_field(v, "comm_d_proofs", field), f"{field}.comm_d_proofs", d_ar, 0, 0, _sha)
        _expect_root(d_root, comm_d, f"{field}.comm_d_proofs", "comm_d")
        rep, r_root = _read_merkle(_field(v, "comm_r_last_proof", field), f"{field}.comm_r_last_proof", r_ar,
                                   shape.sub, shape.top, _fr)
        same_root("comm_r_last", r_root, f"{field}.comm_r_last_proof")
        for what, mp in (("comm_d_proofs", data), ("comm_r_last_proof", rep)):
            if mp.index != node:
                _fail(f"{field}.{what}", f"opens node {mp.index}, the challenge (c_x) is node {node}")
        cp = ChallengeProof(node, data, rep, c_x, drg, exp)
        derived = _label_proofs(cp, layers)
        labeling = _list(_field(v, "labeling_proofs", field), f"{field}.labeling_proofs", layers)
        for i, (got, want) in enumerate(zip(labeling, derived)):
            _check_label_proof(got, want, f"{field}.labeling_proofs[{i}]")
        _check_label_proof(_field(v, "encoding_proof", field), derived[-1], f"{field}.encoding_proof")
        return cp

    parts_v = _list(variants[want], f"vanilla_proofs.{want}", n_parts)
    parts = []
    for k, part in enumerate(parts_v):
        f = f"vanilla_proofs.{want}[{k}]"
        parts.append([challenge(c, f"{f}[{i}]") for i, c in enumerate(_list(part, f, per))])
    return C1Output(proof, sector, ticket, seed, comm_d, comm_r, roots["comm_c"], roots["comm_r_last"], parts)


def _check_label_proof(got: Any, want: dict, field: str) -> None:
    """A LabelingProof / EncodingProof must be the one the columns imply (layer, node, 37 parents)."""
    for key in ("layer_index", "node"):
        if _field(got, key, field) != want[key]:
            _fail(f"{field}.{key}", f"{got[key]!r}, the columns imply {want[key]}")
    parents = _list(_field(got, "parents", field), f"{field}.parents", len(want["parents"]))
    for j, (p, w) in enumerate(zip(parents, want["parents"])):
        if _fr(p, f"{field}.parents[{j}]") != bytes(w):
            _fail(f"{field}.parents[{j}]", "is not the parent label the columns hold")


def loads(data: bytes | str, sector: SectorID, expected: SealProofType | None = None) -> C1Output:
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProofError(f"{WHAT}: not JSON ({exc})") from None
    return from_json(obj, sector, expected)


def read_c1(raw: bytes, sector: SectorID, expected: SealProofType) -> C1Output:
    """A `c1.out` file: this JSON, or the binary version 1 ("DMC1") that builds before it wrote,
    so a sector whose C1 finished under an older build still goes on to C2 without redoing C1."""
    if raw[:4] == C1_MAGIC:
        out = decode_c1(raw, expected)
        if out.sector != sector:
            raise ProofError(f"{WHAT}: of sector {out.sector}, expected {sector}")
        return out
    return loads(raw, sector, expected)
