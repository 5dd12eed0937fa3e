"""SnapDeals vanilla partition proofs in rust-fil-proofs' bincode form (proofs/snap_bincode.py).

The expected bytes are built here field by field from the Rust sources, not by the encoder:
- rust-fil-proofs 87348a749d80447d00c595af834a8ed73c09e4d9
  storage-proofs-update/src/vanilla.rs: `PartitionProof {comm_c: TreeRDomain, apex_leafs:
  Vec<TreeDDomain>, challenge_proofs: Vec<ChallengeProof>}`, `ChallengeProof {proof_r_old,
  proof_d_new, proof_r_new}` (serde derive: fields in declaration order);
  storage-proofs-core/src/merkle/proof.rs: `MerkleProof {data: ProofData}`, `enum ProofData {Single,
  Sub, Top}`, `SingleProof {root, leaf, path}`, `SubProof {base_proof, sub_proof, root, leaf}`,
  `TopProof {base_proof, sub_proof, top_proof, root, leaf}`, `InclusionPath {path: Vec<PathElement>}`,
  `PathElement {hashes: Vec<Domain>, index: usize, #[serde(skip)] _arity}`;
  filecoin-hashers/src/{poseidon,sha256}.rs: `PoseidonDomain(<Fr as PrimeField>::Repr)` ([u8; 32],
  little-endian), `Sha256Domain([u8; 32])`;
  filecoin-proofs/src/constants.rs: SectorShape2KiB/8MiB/512MiB = LCTree<_, U8, U0, U0>,
  32GiB = <U8, U8, U0>, 64GiB = <U8, U8, U2>; storage-proofs-update/src/constants.rs: TreeD =
  BinaryMerkleTree<Sha256Hasher> (U2).
- filecoin-proofs-api 0e64ce8d9cf87d4039075c101de833290096745b src/update.rs: each partition is
  `PartitionProofBytes(bincode::serialize(&proof)?)` (bincode 1.x, Cargo.toml "1.1.2").
- bincode 1.x's serialize(): little-endian, fixed-width ints, u64 sequence length, u32 variant
  index, a struct / newtype / [u8; 32] as its fields back to back with no length; usize as u64."""

import os

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs import ProofError
from appliance.proofs.addpiece import add_pieces
from appliance.proofs.field import MODULUS
from appliance.proofs.merkle import MerkleProof
from appliance.proofs.pc2 import read_p_aux
from appliance.proofs.poseidon import hash_nodes
from appliance.proofs.seal import seal_sector
from appliance.proofs.snap import update_proof
from appliance.proofs.snap_bincode import decode_partition, encode_partition, encode_partitions, vanilla_from_partitions
from appliance.proofs.snap_encode import encode_into
from appliance.proofs.snap_proof import (UpdateChallengeProof, UpdatePartitionProof, prove_update_partitions,
                                         verify_update_partitions)

P2K = seal_proof("StackedDrg2KiBV1_1")
U2K = update_proof("StackedDrg2KiBV1")


# ----------------------------------------------------------------- bincode by hand, from the source

def u32(n: int) -> bytes:
    return n.to_bytes(4, "little")


def u64(n: int) -> bytes:
    return n.to_bytes(8, "little")


def vec(items: list[bytes]) -> bytes:
    """Vec<T>: u64 length, then the elements."""
    return u64(len(items)) + b"".join(items)


def inclusion_path(levels: list[tuple[list[bytes], int]]) -> bytes:
    """InclusionPath {path: Vec<PathElement {hashes: Vec<Domain>, index: usize}>} (_arity skipped)."""
    return vec([vec(hashes) + u64(index) for hashes, index in levels])


def levels(p: MerkleProof, arities: list[int]) -> list[tuple[list[bytes], int]]:
    """Each level's siblings and the opened node's position among its arity."""
    out, idx = [], p.index
    for arity, siblings in zip(arities, p.path):
        out.append((siblings, idx % arity))
        idx //= arity
    return out


def merkle_proof(p: MerkleProof, root: bytes, arities: list[int], upper: int) -> bytes:
    """MerkleProof {data: ProofData}: the u32 variant, then that variant's struct."""
    lv = levels(p, arities)
    if upper == 0:                                           # Single {root, leaf, path}
        return u32(0) + root + p.leaf + inclusion_path(lv)
    base, rest = lv[:-upper], lv[-upper:]                    # Sub / Top {base_proof, sub_proof[, top_proof], root, leaf}
    return u32(upper) + inclusion_path(base) + b"".join(inclusion_path([x]) for x in rest) + root + p.leaf


def partition_proof(part: UpdatePartitionProof, comm_d: bytes, r_arities: list[int], d_levels: int, upper: int) -> bytes:
    out = part.comm_c + vec(part.apex_leaves) + u64(len(part.challenges))
    for cp in part.challenges:
        out += (merkle_proof(cp.r_old, part.root_r_old, r_arities, upper)
                + merkle_proof(cp.d_new, comm_d, [2] * d_levels, 0)
                + merkle_proof(cp.r_new, part.root_r_new, r_arities, upper))
    return out


# ------------------------------------------------------------------------------ a real 2KiB update

@pytest.fixture(scope="module")
def update(tmp_path_factory):
    d = tmp_path_factory.mktemp("snapbin")
    r = seal_sector(P2K, SectorID(1000, 7), os.urandom(31) + b"\0", bytes([1]) * 32, d / "work")
    (d / "a.bin").write_bytes(os.urandom(1000))
    staged = add_pieces(P2K.size, [d / "a.bin"], d / "staged")
    enc = encode_into(U2K, d / "u", d / "uc", r.sector_dir / "sealed", r.sector_dir / "cache", d / "staged",
                      [s.info for s in staged])
    comm_c, last = read_p_aux(r.sector_dir / "cache")
    comm_r_old = hash_nodes([comm_c, last])
    v = prove_update_partitions(U2K, comm_r_old, enc.comm_r_new, enc.comm_d_new, r.sector_dir / "sealed",
                                r.sector_dir / "cache", d / "u", d / "uc")
    return v


def test_2kib_partition_proof_is_rusts_bincode(update):
    v = update
    [part] = v.partitions
    [got] = encode_partitions(v)
    # 2KiB: tree_r is 64 leaves of arity 8 (two levels, Single), tree_d 64 leaves binary (six levels)
    assert got == partition_proof(part, v.comm_d_new, [8, 8], 6, 0)
    # the same layout pinned by offset and size, worked out on paper:
    # comm_c 32 | apex_leafs 8 + 8*32 | challenge_proofs 8 + 10 * (r 556 + d 364 + r 556)
    #   r = variant 4 + root 32 + leaf 32 + path len 8 + 2 * (hashes len 8 + 7*32 + index 8)
    #   d = 4 + 32 + 32 + 8 + 6 * (8 + 32 + 8)
    assert len(got) == 32 + 8 + 256 + 8 + 10 * (556 + 364 + 556) == 15064
    assert got[:32] == part.comm_c and got[32:40] == bytes([8, 0, 0, 0, 0, 0, 0, 0])
    assert got[40:296] == b"".join(part.apex_leaves) and got[296:304] == bytes([10] + [0] * 7)
    c0 = part.challenges[0]
    assert got[304:308] == b"\0\0\0\0"                                        # ProofData::Single
    assert got[308:340] == part.root_r_old and got[340:372] == c0.r_old.leaf   # root, then leaf
    assert got[372:380] == bytes([2] + [0] * 7) and got[380:388] == bytes([7] + [0] * 7)
    assert got[388:388 + 7 * 32] == b"".join(c0.r_old.path[0])
    assert got[612:620] == (c0.r_old.index % 8).to_bytes(8, "little")         # PathElement.index: usize as u64
    d_at = 304 + 556
    assert got[d_at:d_at + 4] == b"\0\0\0\0" and got[d_at + 4:d_at + 36] == v.comm_d_new


def test_round_trip(update):
    v = update
    elements = encode_partitions(v)
    back = vanilla_from_partitions(U2K, v.comm_r_old, v.comm_r_new, v.comm_d_new, elements)
    assert back == v
    verify_update_partitions(U2K, v.comm_r_old, v.comm_r_new, v.comm_d_new, back)
    d = decode_partition(elements[0], U2K)
    assert d.part == v.partitions[0] and d.comm_d_new == v.comm_d_new


def _err(data: bytes, match: str, proof=U2K):
    with pytest.raises(ProofError, match=match) as e:
        decode_partition(data, proof, "p")
    return str(e.value)


def test_strict_decoding_names_field_and_offset(update):
    v = update
    good = encode_partitions(v)[0]
    assert "truncated at byte 15056 reading challenge_proofs[9].proof_r_new.data.Single.path.path[1].index" in \
        _err(good[:-1], "truncated")
    for cut, field in ((0, "comm_c"), (32, "apex_leafs length"), (72, r"apex_leafs\[1\]"),
                       (296, "challenge_proofs length"), (304, r"challenge_proofs\[0\].proof_r_old.data variant"),
                       (308, r"challenge_proofs\[0\].proof_r_old.data.Single.root"),
                       (860, r"challenge_proofs\[0\].proof_d_new.data variant")):
        _err(good[:cut + 1], f"p: truncated at byte {cut} reading {field}$")
    for cut in range(0, len(good), 97):                 # anywhere: refused, never read past the end
        _err(good[:cut], "p: truncated at byte ")
    _err(good + b"\0", "p: 1 trailing bytes after byte 15064")
    _err(good[:32] + u64(9) + good[40:], "p: apex_leafs has length 9 at byte 32, expected 8")
    _err(good[:296] + u64(86) + good[304:], "p: challenge_proofs has length 86 at byte 296, expected 10")
    _err(good[:304] + u32(1) + good[308:],
         r"challenge_proofs\[0\].proof_r_old.data at byte 304 is Sub; tree_r of this proof type is Single")
    _err(good[:304] + u32(7) + good[308:], "variant 7")
    _err(MODULUS.to_bytes(32, "little") + good[32:], "p: comm_c at byte 0 is not a canonical field element")
    _err(good[:40] + b"\xff" * 32 + good[72:], r"apex_leafs\[0\] at byte 40 is not a 254-bit")
    _err(good[:372] + u64(3) + good[380:], r"proof_r_old.data.Single.path.path has length 3 at byte 372, expected 2")
    _err(good[:380] + u64(8) + good[388:], r"Single.path.path\[0\].hashes has length 8 at byte 380, expected 7 \(arity 8\)")
    _err(good[:612] + u64(8) + good[620:], r"path\[0\].index = 8 at byte 612 is out of range \(must be < 8\)")
    second_r_old = 304 + 1476 + 4                       # challenge 1's proof_r_old root
    bad = bytearray(good)
    bad[second_r_old] ^= 1
    _err(bytes(bad), r"challenge_proofs\[1\].proof_r_old \(byte 1780\) states root .*, challenge_proofs\[0\]")
    _err(good, "apex_leafs has length 8 at byte 32, expected 128", proof=update_proof("StackedDrg8MiBV1"))


def test_partitions_checked_against_the_public_inputs(update):
    v = update
    elements = encode_partitions(v)
    args = (U2K, v.comm_r_old, v.comm_r_new, v.comm_d_new)
    with pytest.raises(ProofError, match="2 partition proofs, StackedDrg2KiBV1 has 1 partition$"):
        vanilla_from_partitions(*args, elements * 2)
    other_d = bytes(32)
    with pytest.raises(ProofError, match=r"vanilla proofs\[0\]: proof_d_new openings state root .*, not comm_d_new"):
        vanilla_from_partitions(U2K, v.comm_r_old, v.comm_r_new, other_d, elements)
    # a partition whose bytes decode but do not prove: verification catches it
    bad = bytearray(elements[0])
    bad[388] ^= 1                                       # a sibling of challenge 0's tree_r_old path
    tampered = vanilla_from_partitions(*args, [bytes(bad)])
    with pytest.raises(ProofError, match="tree_r_old opening does not reach its root"):
        verify_update_partitions(*args, tampered)


# ------------------------------------------------------------- the compound shapes, synthetically

def _node(sha: bool = False) -> bytes:
    b = bytearray(os.urandom(32))
    b[31] &= 0x3F           # < 2^254: canonical in Fr, and a sha256-trunc254 node
    return bytes(b)


def _opening(arities: list[int], sha: bool = False) -> MerkleProof:
    index, scale = 0, 1
    for a in arities:
        index += (os.urandom(1)[0] % a) * scale
        scale *= a
    return MerkleProof(index, _node(sha), [[_node(sha) for _ in range(a - 1)] for a in arities])


def _synthetic_partition(proof, r_arities: list[int]) -> UpdatePartitionProof:
    d_levels = proof.nodes.bit_length() - 1
    return UpdatePartitionProof(_node(), _node(), _node(), [_node(sha=True) for _ in range(proof.apex_leaves)],
                                [UpdateChallengeProof(_opening(r_arities), _opening([2] * d_levels, sha=True),
                                                      _opening(r_arities))
                                 for _ in range(proof.challenges_per_partition)])


@pytest.mark.parametrize("name, r_arities, upper", [("StackedDrg32GiBV1", [8] * 9 + [8], 1),
                                                    ("StackedDrg64GiBV1", [8] * 9 + [8, 2], 2)])
def test_sub_and_top_tree_shapes(name, r_arities, upper):
    """32GiB's tree_r is 8 trees of 8^9 leaves (ProofData::Sub), 64GiB's 2 x 8 of them (Top): the
    base path then one PathElement for the sub tree (and one for the top tree), root and leaf last."""
    proof = update_proof(name)
    d_levels = proof.nodes.bit_length() - 1
    comm_d, part = _node(sha=True), _synthetic_partition(proof, r_arities)
    got = encode_partition(proof, comm_d, part)
    assert got == partition_proof(part, comm_d, r_arities, d_levels, upper)
    at = 32 + 8 + 128 * 32 + 8
    assert got[at:at + 4] == u32(upper) and got[at + 4:at + 12] == u64(len(r_arities) - upper)
    d = decode_partition(got, proof)
    assert d.part == part and d.comm_d_new == comm_d
    with pytest.raises(ProofError, match=f"is Single; tree_r of this proof type is {['', 'Sub', 'Top'][upper]}"):
        decode_partition(got[:at] + u32(0) + got[at + 4:], proof)


# ------------------------------------------------------------- serde_derive reads what we wrote

HARNESS = os.path.join(os.path.dirname(__file__), "rust_harness")
DEBIAN_REGISTRY = "/usr/share/cargo/registry"


def _json_merkle(p: MerkleProof, root: bytes, arities: list[int], upper: int) -> dict:
    """MerkleProof as serde_json writes the harness's mirror of it."""
    elems = [{"hashes": [list(h) for h in hashes], "index": i} for hashes, i in levels(p, arities)]
    if upper == 0:
        return {"data": {"Single": {"root": list(root), "leaf": list(p.leaf), "path": {"path": elems}}}}
    body = {"base_proof": {"path": elems[:-upper]}, "sub_proof": {"path": [elems[-upper]]}}
    if upper == 2:
        body["top_proof"] = {"path": [elems[-1]]}
    return {"data": {("Sub", "Top")[upper - 1]: {**body, "root": list(root), "leaf": list(p.leaf)}}}


def _json_partition(part: UpdatePartitionProof, comm_d: bytes, r_arities: list[int], d_levels: int, upper: int) -> dict:
    return {"comm_c": list(part.comm_c), "apex_leafs": [list(a) for a in part.apex_leaves],
            "challenge_proofs": [{"proof_r_old": _json_merkle(cp.r_old, part.root_r_old, r_arities, upper),
                                  "proof_d_new": _json_merkle(cp.d_new, comm_d, [2] * d_levels, 0),
                                  "proof_r_new": _json_merkle(cp.r_new, part.root_r_new, r_arities, upper)}
                                 for cp in part.challenges]}


@pytest.mark.slow
def test_rust_serde_reads_our_partition_proofs(update, tmp_path):
    """tests/rust_harness's partition-proof-harness declares PartitionProof and the Merkle types as
    the sources do and reads our bytes with serde_derive's layout (its bincode reader is its own:
    Debian packages no bincode crate). Needs cargo and Debian's librust-serde*-dev; skipped without."""
    import glob
    import json
    import shutil
    import subprocess
    if not shutil.which("cargo") or not all(glob.glob(f"{DEBIAN_REGISTRY}/{c}-1.*")
                                            for c in ("serde", "serde_derive", "serde_json")):
        pytest.skip("cargo or Debian's serde crates (librust-serde-dev, -derive-dev, -json-dev) are not installed")
    build = subprocess.run(["cargo", "build", "--offline", "-q"], cwd=HARNESS, capture_output=True, text=True,
                           timeout=600, env={**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")})
    assert build.returncode == 0, build.stderr
    exe = tmp_path / "target" / "debug" / "partition-proof-harness"

    def rust_reads(data: bytes) -> subprocess.CompletedProcess:
        (tmp_path / "p.bin").write_bytes(data)
        return subprocess.run([exe, tmp_path / "p.bin"], capture_output=True, text=True, timeout=60)

    v = update
    [element] = encode_partitions(v)
    out = rust_reads(element)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == _json_partition(v.partitions[0], v.comm_d_new, [8, 8], 6, 0)
    for name, r_arities, upper in (("StackedDrg32GiBV1", [8] * 10, 1), ("StackedDrg64GiBV1", [8] * 10 + [2], 2)):
        proof = update_proof(name)
        d_levels = proof.nodes.bit_length() - 1
        comm_d, part = _node(sha=True), _synthetic_partition(proof, r_arities)
        out = rust_reads(encode_partition(proof, comm_d, part))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout) == _json_partition(part, comm_d, r_arities, d_levels, upper), name
    assert "unexpected end of input at byte 15056" in rust_reads(element[:-1]).stderr
    assert "1 bytes after the proof" in rust_reads(element + b"\0").stderr


# ------------------------------------------------------------------------- 8MiB: four partitions

@pytest.mark.slow
def test_8mib_four_partitions_through_the_processor(tmp_path):
    """8MiB has 4 partitions of 128 apex leaves: the task carries four elements, in partition
    order, and `damocles processor snap_prove` proves from them; swapped, they do not verify."""
    import json
    import subprocess
    from appliance.proofs.snap import update_proof_for_seal
    from appliance.proofs.snap_proof import verify_update_proof
    from appliance.worker.stage_snap_post import snap_prove_task
    from .conftest import ROOT, damocles_cmd

    p8 = seal_proof("StackedDrg8MiBV1_1")
    u8 = update_proof_for_seal(p8)
    r = seal_sector(p8, SectorID(1000, 1), os.urandom(31) + b"\0", bytes([1]) * 32, tmp_path / "w", pc2_procs=2)
    (tmp_path / "piece.bin").write_bytes(os.urandom(3 << 20))
    staged = add_pieces(p8.size, [tmp_path / "piece.bin"], tmp_path / "staged")
    enc = encode_into(u8, tmp_path / "u", tmp_path / "uc", r.sector_dir / "sealed", r.sector_dir / "cache",
                      tmp_path / "staged", [s.info for s in staged], 2)
    v = prove_update_partitions(u8, r.comm_r, enc.comm_r_new, enc.comm_d_new, r.sector_dir / "sealed",
                                r.sector_dir / "cache", tmp_path / "u", tmp_path / "uc")
    task = snap_prove_task(v)
    assert len(task["vannilla_proofs"]) == 4
    # per partition: 32 + (8 + 128*32) + 8 + 10 * (r + d + r), tree_r 6 levels of 8, tree_d 18 binary levels
    r_len, d_len = 4 + 64 + 8 + 6 * (8 + 7 * 32 + 8), 4 + 64 + 8 + 18 * (8 + 32 + 8)
    assert [len(e) for e in task["vannilla_proofs"]] == [32 + 8 + 4096 + 8 + 10 * (2 * r_len + d_len)] * 4
    assert vanilla_from_partitions(u8, r.comm_r, enc.comm_r_new, enc.comm_d_new,
                                   [bytes(e) for e in task["vannilla_proofs"]]) == v
    swapped = {**task, "vannilla_proofs": [task["vannilla_proofs"][i] for i in (1, 0, 2, 3)]}
    lines = [json.dumps({"id": 1, "task": task}), json.dumps({"id": 2, "task": swapped})]
    p = subprocess.run(damocles_cmd("processor", "snap_prove"), input="".join(x + "\n" for x in lines), text=True,
                       capture_output=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    out = p.stdout.splitlines()
    assert p.returncode == 0 and out[0] == "snap_prove processor ready", p.stderr
    ok, bad = sorted((json.loads(x) for x in out[1:]), key=lambda a: a["id"])
    assert ok["err_msg"] is None
    verify_update_proof(u8, r.comm_r, enc.comm_r_new, enc.comm_d_new, bytes(ok["output"]))
    assert bad["output"] is None and "partition 0" in bad["err_msg"]
