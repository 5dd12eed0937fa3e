"""SnapDeals (ReplicaUpdate): update types and constants, the randomness and challenges against
rust-fil-proofs' own vectors, encoding against an independent recomputation, decoding, the
vanilla partition proofs with every field tampered in turn, strict parsing, and the CLI."""

import json
import os
import shutil
from operator import mul

import pytest

from appliance.core.proof_types import SEAL_PROOFS, default_seal_proof, seal_proof
from appliance.core.sector import SectorID
from appliance.proofs import ProofError
from appliance.proofs.addpiece import add_pieces
from appliance.proofs.commitment import comm_d_from_pieces
from appliance.proofs.field import MODULUS
from appliance.proofs.merkle import build_rows, poseidon_hasher, split_nodes
from appliance.proofs.pc2 import read_p_aux, t_aux_bytes
from appliance.proofs.poseidon import constants, hash_nodes
from appliance.proofs.seal import seal_sector
from appliance.proofs.snap import (UPDATE_PROOFS, challenges, gen_randomness, h_select, phi, update_proof,
                                   update_proof_for_seal)
from appliance.proofs.snap_encode import (SectorFiles, decode_from, encode_files, encode_into, encode_sector,
                                          remove_encoded_data, sector_files, unseal_update_range)
from appliance.proofs.snap_proof import (decode_update_proof, decode_vanilla, encode_vanilla, generate_update_proof,
                                         prove_update_partitions, verify_update_partitions, verify_update_proof)

from .conftest import run_cli
from .proofutil import envelope_flips, mutations

P2K = seal_proof("StackedDrg2KiBV1_1")
U2K = update_proof("StackedDrg2KiBV1")
SEED = bytes([1]) * 32


# ------------------------------------------------------------------------ types, constants

def test_update_proof_types_and_constants():
    assert [(p.id, p.name) for p in UPDATE_PROOFS.values()] == [
        (0, "StackedDrg2KiBV1"), (1, "StackedDrg8MiBV1"), (2, "StackedDrg512MiBV1"), (3, "StackedDrg32GiBV1"),
        (4, "StackedDrg64GiBV1")]
    assert update_proof(3) is update_proof("StackedDrg32GiBV1") is update_proof("3")
    with pytest.raises(ValueError, match="unknown update proof"):
        update_proof(5)
    for s in SEAL_PROOFS.values():   # go-state-types SealProofInfos: every seal type of a size maps to one update type
        assert update_proof_for_seal(s).size == s.size
    # storage-proofs-update constants.rs: (partitions, challenges per partition, h, apex leaves)
    table = {p.name: (p.partitions, p.challenges_per_partition, p.h, p.apex_leaves, p.snark_proof_bytes)
             for p in UPDATE_PROOFS.values()}
    assert table == {"StackedDrg2KiBV1": (1, 10, 1, 8, 192), "StackedDrg8MiBV1": (4, 10, 10, 128, 768),
                     "StackedDrg512MiBV1": (16, 86, 10, 128, 3072), "StackedDrg32GiBV1": (16, 86, 10, 128, 3072),
                     "StackedDrg64GiBV1": (16, 86, 10, 128, 3072)}
    assert h_select(1 << 30, 10) == 8 and h_select(64, 1) == 1
    with pytest.raises(ProofError, match="not allowed"):
        h_select(1 << 30, 3)


class _XorShift:
    """rand_xorshift 0.3 XorShiftRng (seeded from 16 LE bytes; next_u64 = two next_u32, low first)."""

    def __init__(self, seed: bytes):
        self.s = [int.from_bytes(seed[i:i + 4], "little") for i in range(0, 16, 4)]

    def u32(self) -> int:
        x, y, z, w = self.s
        t = (x ^ (x << 11)) & 0xFFFFFFFF
        new = (w ^ (w >> 19) ^ (t ^ (t >> 8))) & 0xFFFFFFFF
        self.s = [y, z, w, new]
        return new

    def u64(self) -> int:
        lo = self.u32()
        return (self.u32() << 32) | lo


def _fr_random(rng: _XorShift) -> int:
    """blstrs Scalar::random: four u64 (LE limbs), top bit masked, rejection sampled."""
    while True:
        limbs = [rng.u64() for _ in range(4)]
        limbs[3] &= (1 << 63) - 1
        v = sum(limb << (64 * i) for i, limb in enumerate(limbs))
        if v < MODULUS:
            return v


def test_challenges_match_rust_fil_proofs_vectors():
    # storage-proofs-update src/challenges.rs test_challenges_against_hardcoded: comm_r_new is
    # TreeRDomain::random(XorShiftRng::from_seed(TEST_SEED)); (sector size, k) -> first 5 challenges.
    # This checks the custom-domain Poseidon (phi / rho / challenge digests) and the bit slicing.
    test_seed = bytes([0x59, 0x62, 0xbe, 0x5d, 0x76, 0x3d, 0x31, 0x8d, 0x17, 0xdb, 0x37, 0x32, 0x54, 0x06, 0xbc, 0xe5])
    comm_r_new = _fr_random(_XorShift(test_seed)).to_bytes(32, "little")
    vectors = {(0, 0): [53, 51, 56, 3, 0],
               (1, 0): [36085, 32783, 44060, 10950, 3731], (1, 1): [78878, 130797, 112892, 93994, 78379],
               (2, 0): [1019125, 116736, 706220, 59698, 799498],
               (2, 1): [2092548, 1213276, 1185483, 1164598, 1095197],
               (2, 14): [15212432, 15665918, 15015423, 15012912, 15495223],
               (2, 15): [16388544, 15794686, 16637142, 16319148, 16328348],
               (3, 0): [1019125, 27985696, 15282860, 11586600, 44651330],
               (3, 1): [109168525, 127316247, 80331041, 97065716, 72310052],
               (3, 14): [990420169, 955146989, 968005601, 976863263, 944650706],
               (3, 15): [1038629497, 1053983614, 1030421316, 1027373887, 1068685433],
               (4, 0): [1019125, 13992848, 3820715, 18225541, 57316660],
               (4, 1): [243386253, 197875851, 204632136, 171516766, 247789010],
               (4, 14): [1997053129, 1920414070, 2003609080, 1900492803, 1963254685],
               (4, 15): [2045262457, 2036941247, 2136653521, 2091356007, 2147167623]}
    for (pid, k), want in vectors.items():
        got = challenges(UPDATE_PROOFS[pid], comm_r_new, k)
        assert got[:5] == want, (pid, k)
    # bucketing (test_challenge_bucketing): partition k's challenges lie in the k-th chunk
    for p in UPDATE_PROOFS.values():
        chunk = p.nodes // p.partitions
        for k in (0, p.partitions - 1):
            cs = challenges(p, comm_r_new, k)
            assert len(cs) == p.challenges_per_partition and all(k * chunk <= c < (k + 1) * chunk for c in cs)


def _poseidon_textbook(inputs, tag):
    """Poseidon of arity 2 with domain tag `tag`, round by round (no optimisation)."""
    c = constants(2)
    state = [tag, *inputs]
    half = c.r_f // 2
    for r in range(c.r_f + c.r_p):
        state = [(s + k) % MODULUS for s, k in zip(state, c.round_constants[r])]
        if r < half or r >= half + c.r_p:
            state = [pow(s, 5, MODULUS) for s in state]
        else:
            state[0] = pow(state[0], 5, MODULUS)
        state = [sum(map(mul, state, col)) % MODULUS for col in c.mds_cols]
    return state[1]


def test_gen_randomness_is_poseidon_with_custom_tag():
    for a, b in ((0, 0), (1, 2), (MODULUS - 1, 12345)):
        assert gen_randomness(a, b) == _poseidon_textbook([a, b], 1 << 40)
    assert gen_randomness(1, 2) != int.from_bytes(hash_nodes([(1).to_bytes(32, "little"), (2).to_bytes(32, "little")]), "little")


# ------------------------------------------------------------------------------ a 2KiB update

@pytest.fixture(scope="module")
def updated(tmp_path_factory):
    d = tmp_path_factory.mktemp("snap")
    r = seal_sector(P2K, SectorID(1000, 7), os.urandom(31) + b"\0", SEED, d / "work")
    a, b = d / "a.bin", d / "b.bin"
    a.write_bytes(os.urandom(300))    # 512-byte piece
    b.write_bytes(os.urandom(1000))   # 1KiB piece
    staged = add_pieces(P2K.size, [a, b], d / "new-staged")
    files = SectorFiles(r.sector_dir / "sealed", r.sector_dir / "cache", r.sector_dir / "update",
                        r.sector_dir / "update-cache")
    enc = encode_files(U2K, files, d / "new-staged", [s.info for s in staged])
    return r, files, enc, d / "new-staged", [s.info for s in staged], (a, b)


def _textbook_replica(key: bytes, data: bytes, comm_d_new: bytes, comm_r_old: bytes) -> list[bytes]:
    """replica_new = key + data * rho(node >> (log2 N - h)), every hash done the slow way."""
    phi_v = _poseidon_textbook([int.from_bytes(comm_d_new, "little"), int.from_bytes(comm_r_old, "little")], 1 << 40)
    n, h = len(key) // 32, U2K.h
    shift = n.bit_length() - 1 - h
    out = []
    for i in range(n):
        r = _poseidon_textbook([phi_v, i >> shift], 1 << 40)
        v = (int.from_bytes(key[32 * i:32 * i + 32], "little") + int.from_bytes(data[32 * i:32 * i + 32], "little") * r)
        out.append((v % MODULUS).to_bytes(32, "little"))
    return out


def test_encoding_matches_recomputation(updated):
    r, f, enc, staged, pieces, _ = updated
    assert enc.comm_r_old == r.comm_r and enc.comm_r_new != r.comm_r
    assert enc.comm_d_new == comm_d_from_pieces(pieces, P2K.size.bytes) != r.comm_d
    assert phi(enc.comm_d_new, enc.comm_r_old) == _poseidon_textbook(
        [int.from_bytes(enc.comm_d_new, "little"), int.from_bytes(enc.comm_r_old, "little")], 1 << 40).to_bytes(32, "little")
    replica = _textbook_replica(f.sealed.read_bytes(), staged.read_bytes(), enc.comm_d_new, enc.comm_r_old)
    assert f.update.read_bytes() == b"".join(replica)
    comm_c, _ = read_p_aux(f.cache)
    root = build_rows(split_nodes(b"".join(replica)), 8, poseidon_hasher)[-1][0]
    assert enc.comm_r_last_new == root and enc.comm_r_new == hash_nodes([comm_c, root])
    # the update cache: what rust-fil-proofs' encode_into leaves there, PC2's file sizes
    sizes = {p.name: p.stat().st_size for p in f.update_cache.iterdir()}
    assert sizes == {"sc-02-data-tree-d.dat": 4064, "sc-02-data-tree-r-last.dat": 32, "p_aux": 64,
                     "t_aux": len(t_aux_bytes(P2K, f.cache))}
    assert (f.update_cache / "p_aux").read_bytes() == comm_c + enc.comm_r_last_new
    assert (f.update_cache / "t_aux").read_bytes() == t_aux_bytes(P2K, f.cache)   # the sector key's, as rust copies it
    assert not any(p.name.endswith(".tmp") or p.name.startswith(".") for p in f.update.parent.iterdir())


def test_decode_and_remove_give_data_and_key_back(updated, tmp_path):
    r, f, enc, staged, _, (a, b) = updated
    decode_from(U2K, tmp_path / "data", f.update, f.sealed, f.cache, enc.comm_d_new)
    assert (tmp_path / "data").read_bytes() == staged.read_bytes()
    assert unseal_update_range(U2K, enc.comm_r_old, enc.comm_d_new, f.update, f.sealed, 0, 508)[:300] == a.read_bytes()
    assert unseal_update_range(U2K, enc.comm_r_old, enc.comm_d_new, f.update, f.sealed, 1016, 1016)[:1000] == b.read_bytes()
    with pytest.raises(ProofError, match="127-byte quads"):
        unseal_update_range(U2K, enc.comm_r_old, enc.comm_d_new, f.update, f.sealed, 5, 127)
    root = remove_encoded_data(U2K, tmp_path / "key", tmp_path / "key-cache", f.update, f.update_cache, staged,
                               enc.comm_r_old, enc.comm_d_new)
    assert (tmp_path / "key").read_bytes() == f.sealed.read_bytes()
    assert (tmp_path / "key-cache" / "p_aux").read_bytes() == (f.cache / "p_aux").read_bytes()
    assert (tmp_path / "key-cache" / "sc-02-data-tree-r-last.dat").read_bytes() == \
        (f.cache / "sc-02-data-tree-r-last.dat").read_bytes()
    assert root == read_p_aux(f.cache)[1]
    # the wrong data does not give the sector key back, and nothing is written
    with pytest.raises(ProofError, match="does not reproduce comm_r_old"):
        remove_encoded_data(U2K, tmp_path / "key2", tmp_path / "key-cache2", f.update, f.update_cache, f.sealed,
                            enc.comm_r_old, enc.comm_d_new)
    assert not (tmp_path / "key2").exists() and not any((tmp_path / "key-cache2").iterdir())


def _vanilla(updated):
    r, f, enc, *_ = updated
    return prove_update_partitions(U2K, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new, f.sealed, f.cache, f.update,
                                   f.update_cache)


def test_update_proofs_verify_and_roundtrip(updated):
    _, _, enc, *_ = updated
    v = _vanilla(updated)
    assert len(v.partitions) == 1 and len(v.partitions[0].challenges) == 10 and len(v.partitions[0].apex_leaves) == 8
    verify_update_partitions(U2K, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new, v)
    assert decode_vanilla(encode_vanilla(v)) == v
    proof = generate_update_proof(v)
    assert proof[:4] == b"DMU2" and decode_update_proof(proof, U2K) == v
    verify_update_proof(U2K, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new, proof)


def test_wrong_public_inputs_rejected(updated):
    _, _, enc, *_ = updated
    proof = generate_update_proof(_vanilla(updated))
    good = {"proof_type": U2K, "comm_r_old": enc.comm_r_old, "comm_r_new": enc.comm_r_new, "comm_d_new": enc.comm_d_new}
    other_d = comm_d_from_pieces([], P2K.size.bytes)
    for kw, msg in (({"comm_r_old": enc.comm_r_new}, "comm_r_old"), ({"comm_r_new": enc.comm_r_old}, "comm_r_new"),
                    ({"comm_d_new": other_d}, "comm_d_new"), ({"proof_type": update_proof(1)}, "proof type"),
                    ({"comm_r_old": b"\xff" * 32}, "canonical"), ({"comm_d_new": b"\xff" * 32}, "sha256-trunc254")):
        with pytest.raises(ProofError, match=msg):
            verify_update_proof(**(good | kw), proof=proof)


def test_every_vanilla_field_tampered_fails(updated):
    _, _, enc, *_ = updated
    v = _vanilla(updated)
    n = 0
    for path, bad in mutations(v):
        with pytest.raises(ProofError) as e:
            verify_update_partitions(U2K, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new, bad)
        assert str(e.value), path
        n += 1
    # header (type, 3 commitments, h) + comm_c, 2 roots, 8 apex leaves + 10 x (16 + 8 + 16) opening fields
    assert n == 5 + 11 + 400


def test_update_proof_bytes_tampered_and_strict_parsing(updated):
    _, _, enc, *_ = updated
    v = _vanilla(updated)
    args = (U2K, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new)
    good = generate_update_proof(v)
    for _, bad in envelope_flips(good):
        with pytest.raises(ProofError):
            verify_update_proof(*args, bad)
    with pytest.raises(ProofError, match="truncated"):
        verify_update_proof(*args, good[:-5])
    with pytest.raises(ProofError, match="unknown version"):
        verify_update_proof(*args, good[:4] + b"\x09\x00" + good[6:])
    with pytest.raises(ProofError, match="bad magic"):
        verify_update_proof(*args, b"DMC2" + good[4:])
    raw = encode_vanilla(v)
    with pytest.raises(ProofError, match="trailing bytes"):
        decode_vanilla(raw + b"\0")
    with pytest.raises(ProofError, match="truncated"):
        decode_vanilla(raw[:-1])
    with pytest.raises(ProofError, match="unknown version"):
        decode_vanilla(raw[:4] + b"\x02\x00" + raw[6:])
    with pytest.raises(ProofError, match="proof type 0, expected 1"):
        decode_vanilla(raw, update_proof(1))
    with pytest.raises(ProofError, match="unknown update proof type"):
        decode_vanilla(raw[:6] + b"\x07\x00" + raw[8:])
    with pytest.raises(ProofError, match="h=2"):                      # h (offset 8 + 96)
        decode_vanilla(raw[:104] + b"\x02" + raw[105:])
    with pytest.raises(ProofError, match="canonical"):                # comm_r_old = the field modulus
        decode_vanilla(raw[:8] + MODULUS.to_bytes(32, "little") + raw[40:])
    with pytest.raises(ProofError, match="comm_d_new"):               # comm_d_new with the top bits set
        decode_vanilla(raw[:40] + b"\xff" * 32 + raw[72:])


def test_encode_refuses_bad_input_and_leaves_nothing(updated, tmp_path):
    r, f, enc, staged, pieces, _ = updated
    root = tmp_path / "store"
    name = "s-t01000-7"
    (root / "sealed").mkdir(parents=True)
    shutil.copy(f.sealed, root / "sealed" / name)
    shutil.copytree(f.cache, root / "cache" / name)
    short = tmp_path / "short"
    short.write_bytes(staged.read_bytes()[:-32])
    noncanon = tmp_path / "noncanon"
    noncanon.write_bytes(b"\xff" * 32 + staged.read_bytes()[32:])
    cases = [(short, None, "has 2016 bytes"), (staged, pieces[:1], "does not match the commitments"),
             (noncanon, None, "not a canonical field element")]
    for data, ps, msg in cases:
        with pytest.raises(ProofError, match=msg):
            encode_sector(U2K, root, SectorID(1000, 7), data, ps)
        assert not (root / "update").exists() or not any((root / "update").iterdir())
        assert not (root / "update-cache").exists() or not any((root / "update-cache").iterdir())
    (root / "cache" / name / "p_aux").unlink()
    with pytest.raises(ProofError, match="p_aux is missing"):
        encode_sector(U2K, root, SectorID(1000, 7), staged)
    with pytest.raises(ProofError, match="sector key"):
        encode_into(U2K, tmp_path / "x", tmp_path / "xc", tmp_path / "nope", f.cache, staged)


def test_encode_sector_in_damocles_layout(updated, tmp_path):
    r, f, enc, staged, pieces, _ = updated
    sector = SectorID(1000, 7)
    files = sector_files(tmp_path, sector)
    assert files.update == tmp_path / "update" / "s-t01000-7" and files.update_cache == tmp_path / "update-cache" / "s-t01000-7"
    files.sealed.parent.mkdir()
    shutil.copy(f.sealed, files.sealed)
    shutil.copytree(f.cache, files.cache)
    out = encode_sector(U2K, tmp_path, sector, staged, pieces)
    assert out == enc and files.update.read_bytes() == f.update.read_bytes()
    with pytest.raises(ProofError, match="already exists"):
        encode_sector(U2K, tmp_path, sector, staged, pieces)
    # a corrupt sector key is caught when proving (the openings are rebuilt from the replica)
    data = bytearray(files.sealed.read_bytes())
    data[40] ^= 1
    files.sealed.write_bytes(bytes(data))
    with pytest.raises(ProofError, match="do not hash to the cached row"):
        prove_update_partitions(U2K, out.comm_r_old, out.comm_r_new, out.comm_d_new, files.sealed, files.cache,
                                files.update, files.update_cache)


def test_snap_cli(tmp_path):
    piece = tmp_path / "piece.bin"
    piece.write_bytes(os.urandom(900))
    run_cli("util", "seal", "--workdir", str(tmp_path / "w"), "--sector", "3", check=True)
    d = tmp_path / "w" / "s-t01000-3"
    out = json.loads(run_cli("util", "snap-encode", str(d), "--piece", str(piece), "--json", check=True).stdout)
    assert out["update_proof"] == "StackedDrg2KiBV1" and out["comm_r_old_cid"] != out["comm_r_new_cid"]
    assert out["comm_r_new_cid"].startswith("bagboea4b5abc") and out["pieces"][0]["payload_size"] == 900
    meta = json.loads((d / "update.json").read_text())
    assert meta["comm_r_new"] == out["comm_r_new"] and (d / "update").exists() and (d / "update-cache" / "p_aux").exists()
    p = run_cli("util", "snap-encode", str(d), "--piece", str(piece))
    assert p.returncode == 2 and "already exists" in p.stderr
    out = json.loads(run_cli("util", "snap-prove", str(d), "--json", check=True).stdout)
    assert out["verified"] is True and out["proof_succinct"] is False and out["snark_proof_bytes"] == 192
    out = json.loads(run_cli("util", "snap-verify", str(d), "--json", check=True).stdout)
    assert out["proof_valid"] is True and out["error"] is None
    out = json.loads(run_cli("util", "snap-decode", str(d), "--output", str(tmp_path / "o"), "--length", "1016",
                             "--json", check=True).stdout)
    assert out["bytes"] == 1016 and (tmp_path / "o").read_bytes()[:900] == piece.read_bytes()
    meta["comm_d_new"] = meta["comm_r_old"][:-2] + "00"     # wrong public input: exit 1, the reason in JSON
    (d / "update.json").write_text(json.dumps(meta))
    p = run_cli("util", "snap-verify", str(d), "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["proof_valid"] is False


@pytest.mark.slow
def test_8mib_update(tmp_path):
    p8 = seal_proof("StackedDrg8MiBV1_1")
    u8 = update_proof_for_seal(p8)
    r = seal_sector(p8, SectorID(1000, 1), os.urandom(31) + b"\0", SEED, tmp_path / "w", pc2_procs=2)
    piece = tmp_path / "piece.bin"
    piece.write_bytes(os.urandom(3 << 20))
    staged = add_pieces(p8.size, [piece], tmp_path / "staged")
    files = sector_files(tmp_path / "store", SectorID(1000, 1))
    files.sealed.parent.mkdir(parents=True)
    shutil.copy(r.sector_dir / "sealed", files.sealed)
    shutil.copytree(r.sector_dir / "cache", files.cache)
    enc = encode_sector(u8, tmp_path / "store", SectorID(1000, 1), tmp_path / "staged", [s.info for s in staged], procs=2)
    assert enc.comm_r_old == r.comm_r and (files.update_cache / "sc-02-data-tree-r-last.dat").stat().st_size == 18720
    v = prove_update_partitions(u8, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new, files.sealed, files.cache,
                                files.update, files.update_cache)
    assert [len(p.challenges) for p in v.partitions] == [10] * 4 and len(v.partitions[0].apex_leaves) == 128
    verify_update_proof(u8, enc.comm_r_old, enc.comm_r_new, enc.comm_d_new, generate_update_proof(v))
    decode_from(u8, tmp_path / "data", files.update, files.sealed, files.cache, enc.comm_d_new, procs=2)
    assert (tmp_path / "data").read_bytes() == (tmp_path / "staged").read_bytes()
    assert default_seal_proof(p8.size) == p8
