"""The C1 output as filecoin-proofs-api's SealCommitPhase1Output in serde JSON.

Expected values are derived here from the sources, not from our encoder:
- filecoin-proofs-api 0e64ce8d4039075c101de833290096745b, src/seal.rs (SealCommitPhase1Output,
  VanillaSealProof: one variant per size) and src/registry.rs (RegisteredSealProof names);
- rust-fil-proofs 87348a749d80447d00c595af834a8ed73c09e4d9: storage-proofs-porep
  src/stacked/vanilla/params.rs (Proof, ReplicaColumnProof, Proof::from_parts: labeling proof
  parents = drg parents at the layer, expander parents at the layer below, cycled to 37;
  encoding_proof = the last labeling proof), column.rs (`_h: PhantomData` not skipped: null),
  labeling_proof.rs / encoding_proof.rs (`_h` skipped), challenges.rs (interactive challenges),
  storage-proofs-core src/merkle/proof.rs (MerkleProof {data: Single {root, leaf, path:
  {path: [{hashes, index}]}}}, Sub / Top field order), filecoin-hashers (domains are [u8; 32]);
- the sector is lotus-bench's 2KiB example (t01000, sector 1, zero ticket, zero data), whose
  comm_d and comm_r lotus-bench prints (see test_seal.py)."""

import copy
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs import ProofError, c1_json
from appliance.proofs.c2 import decode_c2
from appliance.proofs.merkle import MerkleProof
from appliance.proofs.porep import encode_c1, parents_of, verify_c1
from appliance.proofs.seal import seal_sector
from appliance.proofs.store import shape_of

from .conftest import ROOT

P2K = seal_proof("StackedDrg2KiBV1_1")
SECTOR = SectorID(1000, 1)
TICKET, SEED = bytes(32), bytes([1]) * 32
COMM_D = bytes.fromhex("fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833")   # lotus-bench
COMM_R = bytes.fromhex("c647b998c78282296cfd1160714228d43f3b054dfbbb77172b68115ba3c3b762")   # lotus-bench
FIXTURE = ROOT / "tests" / "fixtures" / "c1out-2kib-t01000-1.json"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory):
    r = seal_sector(P2K, SECTOR, TICKET, SEED, tmp_path_factory.mktemp("seal"))
    return r, decode_c2((r.sector_dir / "proof.bin").read_bytes())


def _node(path: Path, i: int) -> list[int]:
    with open(path, "rb") as f:
        f.seek(32 * i)
        return list(f.read(32))


def _replica_id() -> bytes:
    # filecoin-proofs generate_replica_id: sha256(prover_id, u64_be(sector), ticket, comm_d, porep_seed),
    # top two bits cleared (bytes_into_fr_repr_safe); prover_id = uvarint(1000) padded; porep_seed u64_le(5) ++ 0s
    d = hashlib.sha256(bytes([0xE8, 0x07]).ljust(32, b"\0") + (1).to_bytes(8, "big") + TICKET + COMM_D
                       + (5).to_bytes(8, "little") + bytes(24)).digest()
    return d[:31] + bytes([d[31] & 0x3F])


def test_encoding_field_by_field(sealed):
    r, c1 = sealed
    obj = c1_json.to_json(c1)
    rid = _replica_id()
    assert list(obj) == ["registered_proof", "vanilla_proofs", "comm_r", "comm_d", "replica_id", "seed", "ticket"]
    assert obj["registered_proof"] == "StackedDrg2KiBV1_1"
    assert obj["comm_r"] == list(COMM_R) and obj["comm_d"] == list(COMM_D)
    assert obj["replica_id"] == list(rid) and obj["seed"] == list(SEED) and obj["ticket"] == list(TICKET)
    assert list(obj["vanilla_proofs"]) == ["StackedDrg2KiBV1"]
    parts = obj["vanilla_proofs"]["StackedDrg2KiBV1"]
    assert [len(p) for p in parts] == [2]             # 2KiB: 1 partition x 2 challenges
    cache = r.sector_dir / "cache"
    p_aux = (cache / "p_aux").read_bytes()
    comm_c, comm_r_last = list(p_aux[:32]), list(p_aux[32:])
    for i, proof in enumerate(parts[0]):
        h = hashlib.sha256(rid + SEED + i.to_bytes(4, "little")).digest()
        c = int.from_bytes(h, "little") % 63 + 1
        assert list(proof) == ["comm_d_proofs", "comm_r_last_proof", "replica_column_proofs", "labeling_proofs",
                               "encoding_proof"]
        d = proof["comm_d_proofs"]["data"]["Single"]
        assert list(d) == ["root", "leaf", "path"] and d["root"] == list(COMM_D) and d["leaf"] == [0] * 32
        assert list(d["path"]) == ["path"] and [e["index"] for e in d["path"]["path"]] == [(c >> k) & 1 for k in range(6)]
        assert all(list(e) == ["hashes", "index"] and len(e["hashes"]) == 1 for e in d["path"]["path"])
        rl = proof["comm_r_last_proof"]["data"]["Single"]
        assert rl["root"] == comm_r_last and rl["leaf"] == _node(r.sector_dir / "sealed", c)
        assert [e["index"] for e in rl["path"]["path"]] == [c % 8, c // 8]
        assert all(len(e["hashes"]) == 7 for e in rl["path"]["path"])
        cols = proof["replica_column_proofs"]
        assert list(cols) == ["c_x", "drg_parents", "exp_parents"]
        assert len(cols["drg_parents"]) == 6 and len(cols["exp_parents"]) == 8
        ps = parents_of(P2K, c)
        for col, node in zip([cols["c_x"], *cols["drg_parents"], *cols["exp_parents"]], [c, *ps]):
            assert list(col) == ["column", "inclusion_proof"]
            assert col["column"] == {"index": node, "rows": [_node(cache / f"sc-02-data-layer-{k}.dat", node) for k in (1, 2)],
                                     "_h": None}
            assert list(col["column"]) == ["index", "rows", "_h"]
            tc = col["inclusion_proof"]["data"]["Single"]
            assert tc["root"] == comm_c and [e["index"] for e in tc["path"]["path"]] == [node % 8, node // 8]
        drg1 = [col["column"]["rows"][0] for col in cols["drg_parents"]]
        drg2 = [col["column"]["rows"][1] for col in cols["drg_parents"]]
        exp1 = [col["column"]["rows"][0] for col in cols["exp_parents"]]
        want = [{"parents": [drg1[j % 6] for j in range(37)], "layer_index": 1, "node": c},
                {"parents": [(drg2 + exp1)[j % 14] for j in range(37)], "layer_index": 2, "node": c}]
        assert proof["labeling_proofs"] == want and list(proof["labeling_proofs"][0]) == ["parents", "layer_index", "node"]
        assert proof["encoding_proof"] == want[1]


def test_fixture_is_our_encoding_and_decodes(sealed):
    """The committed fixture (a C1 output of the lotus-bench sector, in the Rust shape) is what we
    write byte for byte, and it reads back to the same vanilla proofs."""
    _, c1 = sealed
    raw = FIXTURE.read_bytes()
    assert raw == c1_json.dumps(c1) + b"\n"
    assert c1_json.loads(raw, SECTOR, P2K) == c1


def test_round_trip_and_verify(sealed):
    _, c1 = sealed
    back = c1_json.loads(c1_json.dumps(c1), SECTOR, P2K)
    assert back == c1
    verify_c1(back, P2K, SECTOR, COMM_D, COMM_R, TICKET, SEED)
    obj = c1_json.to_json(c1)
    obj["extra"] = 1                                  # serde ignores unknown fields; so do we
    obj["vanilla_proofs"]["StackedDrg2KiBV1"][0][0]["extra"] = [1]
    assert c1_json.from_json(obj, SECTOR, P2K) == c1


def _ch(obj, i=0):
    return obj["vanilla_proofs"]["StackedDrg2KiBV1"][0][i]


def _set(path):
    """A mutation that sets a nested value (path of keys / indexes) to `value`."""
    def mutate(obj, value):
        *head, last = path
        o = obj
        for k in head:
            o = o[k] if not callable(k) else k(o)
        o[last] = value
    return mutate


def _flip(v):
    return [v[0] ^ 1] + v[1:]


TAMPERS = [
    # (what, mutate(obj), message the error must contain)
    ("unknown proof name", lambda o: o.update(registered_proof="StackedDrg2KiBV9"), "registered_proof"),
    ("other size's name", lambda o: o.update(registered_proof="StackedDrg8MiBV1_1"), "registered_proof"),
    ("replica_id of another sector", lambda o: o.update(replica_id=_flip(o["replica_id"])), "replica_id"),
    ("ticket", lambda o: o.update(ticket=_flip(o["ticket"])), "replica_id"),
    ("comm_d not 254-bit", lambda o: o["comm_d"].__setitem__(31, 0xFF), "comm_d"),
    ("comm_r not canonical", lambda o: o.update(comm_r=[255] * 32), "comm_r"),
    ("seed of 31 bytes", lambda o: o.update(seed=[1] * 31), "seed"),
    ("wrong variant", lambda o: o.update(vanilla_proofs={"StackedDrg8MiBV1": o["vanilla_proofs"]["StackedDrg2KiBV1"]}),
     "vanilla_proofs"),
    ("extra partition", lambda o: o["vanilla_proofs"]["StackedDrg2KiBV1"].append([]), "expected 1 elements"),
    ("missing challenge", lambda o: o["vanilla_proofs"]["StackedDrg2KiBV1"][0].pop(), "expected 2 elements"),
    ("Sub for a single tree", lambda o: _ch(o)["comm_r_last_proof"].update(
        data={"Sub": _ch(o)["comm_r_last_proof"]["data"]["Single"]}), "comm_r_last_proof.data"),
    ("comm_d_proofs root", lambda o: _ch(o)["comm_d_proofs"]["data"]["Single"].update(root=[0] * 32), "is not comm_d"),
    ("comm_r_last roots differ", lambda o: _ch(o, 1)["comm_r_last_proof"]["data"]["Single"].update(root=[7] + [0] * 31),
     "comm_r_last"),
    ("column root differs", lambda o: _ch(o)["replica_column_proofs"]["exp_parents"][3]["inclusion_proof"]["data"]
     ["Single"].update(root=[7] + [0] * 31), "exp_parents[3].inclusion_proof"),
    ("column _h missing", lambda o: _ch(o)["replica_column_proofs"]["c_x"]["column"].pop("_h"), "column._h: missing"),
    ("column _h not null", lambda o: _ch(o)["replica_column_proofs"]["c_x"]["column"].update(_h=0), "column._h"),
    ("column index", lambda o: _ch(o)["replica_column_proofs"]["drg_parents"][0]["column"].update(
        index=_ch(o)["replica_column_proofs"]["drg_parents"][0]["column"]["index"] ^ 1), "drg_parents[0].inclusion_proof"),
    ("path index past arity", lambda o: _ch(o)["comm_d_proofs"]["data"]["Single"]["path"]["path"][0].update(index=2),
     "path[0].index"),
    ("path element moved", lambda o: _ch(o)["comm_r_last_proof"]["data"]["Single"]["path"]["path"][0].update(
        index=(_ch(o)["comm_r_last_proof"]["data"]["Single"]["path"]["path"][0]["index"] + 1) % 8), "comm_r_last_proof"),
    ("sibling missing", lambda o: _ch(o)["comm_r_last_proof"]["data"]["Single"]["path"]["path"][1]["hashes"].pop(),
     "hashes: expected 7"),
    ("labeling parent", lambda o: _ch(o)["labeling_proofs"][0]["parents"].__setitem__(3, [9] + [0] * 31),
     "labeling_proofs[0].parents[3]"),
    ("labeling layer", lambda o: _ch(o)["labeling_proofs"][1].update(layer_index=1), "labeling_proofs[1].layer_index"),
    ("encoding node", lambda o: _ch(o)["encoding_proof"].update(node=0), "encoding_proof.node"),
    ("encoding parents short", lambda o: _ch(o)["encoding_proof"]["parents"].pop(), "encoding_proof.parents"),
    ("index as bool", lambda o: _ch(o)["replica_column_proofs"]["c_x"]["column"].update(index=True), "column.index"),
    ("rows of 3 layers", lambda o: _ch(o)["replica_column_proofs"]["c_x"]["column"]["rows"].append([0] * 32), "rows"),
]


@pytest.mark.parametrize("what,mutate,message", TAMPERS, ids=[t[0] for t in TAMPERS])
def test_tampering_is_refused_naming_the_field(sealed, what, mutate, message):
    _, c1 = sealed
    obj = copy.deepcopy(c1_json.to_json(c1))
    mutate(obj)
    with pytest.raises(ProofError, match=message.replace("[", r"\[").replace("]", r"\]")):
        c1_json.from_json(obj, SECTOR, P2K)


def test_a_well_formed_but_wrong_opening_fails_verification(sealed):
    """Siblings and leaves are only checked by hashing, in verify_c1."""
    _, c1 = sealed
    for where in ("comm_d_proofs", "comm_r_last_proof"):
        obj = c1_json.to_json(c1)
        hashes = _ch(obj)[where]["data"]["Single"]["path"]["path"][0]["hashes"]
        hashes[0] = [(hashes[0][0] + 1) % 256] + hashes[0][1:]
        with pytest.raises(ProofError, match="does not reach"):
            verify_c1(c1_json.from_json(obj, SECTOR, P2K), P2K, SECTOR, COMM_D, COMM_R, TICKET, SEED)


def test_other_sector_and_type_refused(sealed):
    _, c1 = sealed
    raw = c1_json.dumps(c1)
    with pytest.raises(ProofError, match="replica_id"):
        c1_json.loads(raw, SectorID(1000, 2), P2K)
    with pytest.raises(ProofError, match="registered_proof.*StackedDrg2KiBV1\\b"):
        c1_json.loads(raw, SECTOR, seal_proof("StackedDrg2KiBV1"))
    with pytest.raises(ProofError, match="not JSON"):
        c1_json.loads(b"DMC9\x01", SECTOR, P2K)


def test_read_c1_takes_the_old_binary_and_the_json(sealed):
    """A c1.out written by a build before this one (binary version 1) still goes on to C2."""
    _, c1 = sealed
    assert c1_json.read_c1(encode_c1(c1), SECTOR, P2K) == c1
    assert c1_json.read_c1(c1_json.dumps(c1), SECTOR, P2K) == c1
    with pytest.raises(ProofError, match="of sector s-t01000-1, expected s-t01000-2"):
        c1_json.read_c1(encode_c1(c1), SectorID(1000, 2), P2K)


@pytest.mark.parametrize("size,variant", [("32GiB", "Sub"), ("64GiB", "Top")])
def test_compound_tree_openings(size, variant):
    """32GiB (U8, U8, U0): base path, then one sub level; 64GiB (U8, U8, U2): and one top level
    (merkle/proof.rs SubProof / TopProof field order; path_index = base + base_leaves * sub + ...)."""
    shape = shape_of(seal_proof(f"StackedDrg{size}V1_1"))
    ar = shape.arities
    index = shape.leaves - 12345
    path = [[bytes([lv, j]) + bytes(30) for j in range(a - 1)] for lv, a in enumerate(ar)]
    mp = MerkleProof(index, bytes([5]) + bytes(31), path)
    obj = c1_json._merkle(mp, bytes([6]) + bytes(31), ar, shape.sub, shape.top)
    body = obj["data"][variant]
    names = ["base_proof", "sub_proof"] + (["top_proof"] if variant == "Top" else [])
    assert list(obj["data"]) == [variant] and list(body) == names + ["root", "leaf"]
    n_base = len(ar) - len(names) + 1
    assert len(body["base_proof"]["path"]) == n_base == 9
    assert all(len(body[n]["path"]) == 1 for n in names[1:])
    digits, rest = [], index
    for a in ar:
        digits.append(rest % a)
        rest //= a
    flat = body["base_proof"]["path"] + [e for n in names[1:] for e in body[n]["path"]]
    assert [e["index"] for e in flat] == digits and [len(e["hashes"]) for e in flat] == [a - 1 for a in ar]
    back, root = c1_json._read_merkle(obj, "p", ar, shape.sub, shape.top, c1_json._fr)
    assert (back, root) == (mp, bytes([6]) + bytes(31))


HARNESS = ROOT / "tests" / "rust_harness"
DEBIAN_REGISTRY = Path("/usr/share/cargo/registry")


@pytest.mark.slow
def test_rust_serde_round_trips_the_fixture(tmp_path):
    """serde itself, with the shapes declared in tests/rust_harness from the sources, parses the
    fixture and writes it back byte for byte. Needs cargo and Debian's librust-serde*-dev;
    skipped without them (CI does not install them)."""
    if not shutil.which("cargo") or not all(any(DEBIAN_REGISTRY.glob(f"{c}-1.*")) for c in ("serde", "serde_derive", "serde_json")):
        pytest.skip("cargo or Debian's serde crates (librust-serde-dev, -derive-dev, -json-dev) are not installed")
    build = subprocess.run(["cargo", "build", "--offline", "-q"], cwd=HARNESS, capture_output=True, text=True, timeout=600,
                           env={**os.environ, "CARGO_TARGET_DIR": str(tmp_path / "target")})
    assert build.returncode == 0, build.stderr
    exe = tmp_path / "target" / "debug" / "c1out-harness"
    out = subprocess.run([exe, FIXTURE], capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == FIXTURE.read_bytes()
    broken = json.loads(FIXTURE.read_bytes())
    del _ch(broken)["replica_column_proofs"]["c_x"]["column"]["_h"]
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    out = subprocess.run([exe, tmp_path / "broken.json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "missing field `_h`" in out.stderr
    out = subprocess.run([exe, "--c2-output", json.dumps({"proof": [1, 2, 255]})], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == '{"proof":[1,2,255]}'


@pytest.mark.slow
@pytest.mark.parametrize("name", ["StackedDrg32GiBV1_1", "StackedDrg64GiBV1_1"])
def test_full_size_compound_round_trip(name):
    """A whole 32GiB / 64GiB C1 output (10 partitions x 18 challenges, Sub / Top openings) of
    random canonical nodes writes and reads back; no sealing needed for the shapes."""
    import os
    from appliance.proofs.porep import C1Output, ChallengeProof, Column
    proof = seal_proof(name)
    shape = shape_of(proof)

    def node():
        return os.urandom(31) + bytes([os.urandom(1)[0] & 0x3F])

    def opening(i, arities):
        return MerkleProof(i, node(), [[node() for _ in range(a - 1)] for a in arities])

    def column(i):
        return Column([node() for _ in range(proof.size.layers)], opening(i, shape.arities))

    d_ar = [2] * (proof.size.nodes.bit_length() - 1)
    parts = [[ChallengeProof(c, opening(c, d_ar), opening(c, shape.arities), column(c), [column(c + j + 1) for j in range(6)],
                             [column(c + j + 7) for j in range(8)])
              for c in (k * 1_000_003 + i * 7919 for i in range(proof.size.porep_challenges_per_partition))]
             for k in range(proof.size.porep_partitions)]
    out = C1Output(proof, SECTOR, node(), node(), node(), node(), node(), node(), parts)
    raw = c1_json.dumps(out)
    assert c1_json.loads(raw, SECTOR, proof) == out
    variant = "Sub" if shape.top == 0 else "Top"
    first = json.loads(raw)["vanilla_proofs"][f"StackedDrg{proof.size.name}V1"][0][0]
    assert list(first["comm_r_last_proof"]["data"]) == [variant] and list(first["comm_d_proofs"]["data"]) == ["Single"]
