import os
import re

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs import ProofError
from appliance.proofs.c2 import decode_c2, seal_commit_phase2, verify_seal
from appliance.proofs.cid import commd_to_cid, commr_to_cid
from appliance.proofs.commitment import commp_bytes
from appliance.proofs.porep import decode_c1, encode_c1, verify_c1
from appliance.proofs.seal import full_check, read_sector_meta, seal_sector
from appliance.proofs.unseal import unseal_range

from .proofutil import envelope_flips, mutations

P2K = seal_proof("StackedDrg2KiBV1_1")
SEED = bytes([1]) * 32


def test_lotus_bench_2kib_zero_seal(tmp_path):
    # lotus cmd/lotus-bench/simple.go help text (commit e14866315589d7dc488ab77c591977027b017a51, still in b835fab70):
    # t01000, sector 1, StackedDrg2KiBV1_1, zero ticket, zero data
    r = seal_sector(P2K, SectorID(1000, 1), bytes(32), SEED, tmp_path)
    assert commr_to_cid(r.comm_r) == "bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c"
    assert r.comm_d.hex() == "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"
    assert r.verified and r.sector_dir == tmp_path / "s-t01000-1"
    cache = r.sector_dir / "cache"
    # file sizes as rust-fil-proofs writes them for 2KiB (merkletree 0.23 DiskStore / LevelCacheStore)
    sizes = {p.name: p.stat().st_size for p in cache.iterdir()}
    assert sizes == {"sc-02-data-tree-d.dat": 4064, "sc-02-data-layer-1.dat": 2048, "sc-02-data-layer-2.dat": 2048,
                     "sc-02-data-tree-c.dat": 2336, "sc-02-data-tree-r-last.dat": 32, "p_aux": 64,
                     "t_aux": sizes["t_aux"]}
    t_aux = (cache / "t_aux").read_bytes()
    assert t_aux[:8] == (2).to_bytes(8, "little") and b"tree-r-last" in t_aux


def test_devnet_log_2kib_cc_seal(tmp_path):
    # a lotus devnet `sectors status --log` of a 2KiB CC sector (t01002, sector 1, StackedDrg2KiBV1_1), published in a
    # public notes file; an independent CommR for a non-zero ticket
    ticket = bytes.fromhex("c3a1ca12b981a8a59f9a4764edf3398edd239b2afa8ca2bbd57e0091ec193aa0")
    r = seal_sector(P2K, SectorID(1002, 1), ticket, SEED, tmp_path)
    assert commr_to_cid(r.comm_r) == "bagboea4b5abcbnym7z3pgc64fk5wwsk3nsmz62jamgaa3pekzelmm3fv5q6g6zji"


@pytest.fixture(scope="module")
def sealed_with_pieces(tmp_path_factory):
    d = tmp_path_factory.mktemp("seal")
    a, b = d / "a.bin", d / "b.bin"
    a.write_bytes(os.urandom(300))    # 512-byte piece
    b.write_bytes(os.urandom(1000))   # 1KiB piece
    r = seal_sector(P2K, SectorID(1000, 5), os.urandom(31) + b"\0", SEED, d / "work", [a, b], full=True)
    return r, a, b


def test_seal_with_pieces_and_full_check(sealed_with_pieces):
    r, a, b = sealed_with_pieces
    assert r.full_check == []
    assert [p["offset"] for p in r.pieces] == [0, 1024]
    assert r.pieces[0]["cid"] == commd_to_cid(commp_bytes(a.read_bytes()).commitment)
    assert r.pieces[1]["padded_size"] == 1024 and r.pieces[1]["payload_size"] == 1000
    meta = read_sector_meta(r.sector_dir)
    assert meta.comm_r == r.comm_r


def test_unseal_gives_pieces_back(sealed_with_pieces):
    r, a, b = sealed_with_pieces
    meta = read_sector_meta(r.sector_dir)
    out = unseal_range(meta.proof, meta.sector, meta.ticket, meta.comm_d, r.sector_dir / "sealed", 0, 508)
    assert out[:300] == a.read_bytes() and out[300:] == bytes(208)
    out = unseal_range(meta.proof, meta.sector, meta.ticket, meta.comm_d, r.sector_dir / "sealed", 1016, 1016)
    assert out[:1000] == b.read_bytes()
    with pytest.raises(ProofError, match="127-byte quads"):
        unseal_range(meta.proof, meta.sector, meta.ticket, meta.comm_d, r.sector_dir / "sealed", 1, 127)


@pytest.mark.parametrize("victim", ["sealed", "cache/sc-02-data-tree-c.dat", "cache/sc-02-data-tree-r-last.dat",
                                    "cache/sc-02-data-tree-d.dat", "cache/sc-02-data-layer-1.dat", "cache/p_aux"])
def test_full_check_catches_any_flipped_byte(sealed_with_pieces, tmp_path, victim):
    import shutil
    r, _, _ = sealed_with_pieces
    d = tmp_path / "copy"
    shutil.copytree(r.sector_dir, d)
    f = d / victim
    data = bytearray(f.read_bytes())
    pos = len(data) // 2 + 7
    data[pos] ^= 0x01
    f.write_bytes(bytes(data))
    problems = full_check(d)
    assert any(victim in p for p in problems), problems


def _c1(r):
    return decode_c2((r.sector_dir / "proof.bin").read_bytes())


def _verify(r, out):
    m = read_sector_meta(r.sector_dir)
    verify_c1(out, m.proof, m.sector, m.comm_d, m.comm_r, m.ticket, m.seed)


def test_c1_roundtrip_and_public_inputs(sealed_with_pieces):
    r, _, _ = sealed_with_pieces
    out = _c1(r)
    assert decode_c1(encode_c1(out)) == out
    m = read_sector_meta(r.sector_dir)
    verify_seal(m.proof, m.sector, m.comm_d, m.comm_r, m.ticket, m.seed, seal_commit_phase2(out))
    for kw, msg in (({"ticket": os.urandom(32)}, "ticket"), ({"seed": os.urandom(32)}, "seed"),
                    ({"comm_r": bytes(32)}, "comm_r"), ({"sector": SectorID(1000, 6)}, "sector")):
        args = {"proof_type": m.proof, "sector": m.sector, "comm_d": m.comm_d, "comm_r": m.comm_r, "ticket": m.ticket,
                "seed": m.seed, "proof": seal_commit_phase2(out)} | kw
        with pytest.raises(ProofError, match=msg):
            verify_seal(**args)


def _sample(path: str) -> bool:
    """Header fields, and every field of the first challenge's openings and of one column of each kind."""
    if not path.startswith("partitions"):
        return True
    m = re.match(r"partitions\[0\]\[(\d)\]\.(\w+)(?:\[(\d+)\])?", path)
    return bool(m) and m.group(1) == "0" and (m.group(3) in (None, "0"))


def _tamper_all(r, keep):
    out = _c1(r)
    checked = 0
    for path, bad in mutations(out, keep):
        with pytest.raises(ProofError) as e:
            _verify(r, bad)
        assert str(e.value), path
        checked += 1
    return checked


def test_tampered_c1_fields_fail(sealed_with_pieces):
    assert _tamper_all(sealed_with_pieces[0], _sample) > 80


@pytest.mark.slow
def test_tampered_c1_every_field_fails(sealed_with_pieces):
    assert _tamper_all(sealed_with_pieces[0], lambda p: True) > 500


def test_tampered_c2_bytes_fail(sealed_with_pieces):
    r, _, _ = sealed_with_pieces
    m = read_sector_meta(r.sector_dir)
    good = (r.sector_dir / "proof.bin").read_bytes()
    for _, bad in envelope_flips(good):
        with pytest.raises(ProofError):
            verify_seal(m.proof, m.sector, m.comm_d, m.comm_r, m.ticket, m.seed, bad)
    with pytest.raises(ProofError, match="truncated"):
        verify_seal(m.proof, m.sector, m.comm_d, m.comm_r, m.ticket, m.seed, good[:-5])
    with pytest.raises(ProofError, match="unknown version"):
        verify_seal(m.proof, m.sector, m.comm_d, m.comm_r, m.ticket, m.seed, good[:4] + b"\x09\x00" + good[6:])


def test_c1_strict_parsing(sealed_with_pieces):
    r, _, _ = sealed_with_pieces
    raw = encode_c1(_c1(r))
    with pytest.raises(ProofError, match="trailing bytes"):
        decode_c1(raw + b"\0")
    with pytest.raises(ProofError, match="truncated"):
        decode_c1(raw[:-1])
    with pytest.raises(ProofError, match="unknown version"):
        decode_c1(raw[:4] + b"\x02\x00" + raw[6:])
    # comm_r (offset 4+2+2+16+32*3) replaced by the field modulus: not canonical
    off = 4 + 2 + 2 + 16 + 32 * 3
    bad = raw[:off] + (0x73EDA753299D7D483339D80809A1D80553BDA402FFFE5BFEFFFFFFFF00000001).to_bytes(32, "little") + raw[off + 32:]
    with pytest.raises(ProofError, match="canonical"):
        decode_c1(bad)
    bad = raw[:off - 32] + b"\xff" * 32 + raw[off:]       # comm_d with top bits set
    with pytest.raises(ProofError, match="comm_d"):
        decode_c1(bad)


def test_bad_seal_inputs_leave_nothing(tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * 2033)
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    work = tmp_path / "work"
    cases = [([big], bytes(32), SEED, "more than the 2032"), ([empty], bytes(32), SEED, "empty"),
             ([tmp_path / "missing"], bytes(32), SEED, "does not exist"), ([], bytes(31), SEED, "ticket must be 32"),
             ([], bytes(32), bytes(32), "seed must not be all zeros"), ([], bytes(32), SEED * 2, "seed must be 32")]
    for pieces, ticket, seed, msg in cases:
        with pytest.raises(ProofError, match=msg):
            seal_sector(P2K, SectorID(1000, 1), ticket, seed, work, pieces)
        assert not any(work.iterdir()) if work.exists() else True


def test_interrupted_seal_leaves_no_sector(tmp_path, monkeypatch):
    import appliance.proofs.seal as seal_mod

    def boom(*a, **k):
        raise ProofError("injected failure in C1")
    monkeypatch.setattr(seal_mod, "seal_commit_phase1", boom)
    with pytest.raises(ProofError, match="injected"):
        seal_sector(P2K, SectorID(1000, 9), bytes(32), SEED, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_existing_sector_dir_refused(tmp_path):
    seal_sector(P2K, SectorID(1000, 1), bytes(32), SEED, tmp_path)
    with pytest.raises(ProofError, match="already exists"):
        seal_sector(P2K, SectorID(1000, 1), bytes(32), SEED, tmp_path)


def test_c1_refuses_truncated_tree(tmp_path):
    from appliance.proofs.pc2 import read_p_aux
    from appliance.proofs.porep import seal_commit_phase1
    r = seal_sector(P2K, SectorID(1000, 1), bytes(32), SEED, tmp_path)
    cache = r.sector_dir / "cache"
    comm_c, comm_r_last = read_p_aux(cache)
    f = cache / "sc-02-data-tree-c.dat"
    f.write_bytes(f.read_bytes()[:-32])
    with pytest.raises(ProofError, match="tree-c.dat has 2304 bytes, expected 2336"):
        seal_commit_phase1(P2K, SectorID(1000, 1), bytes(32), SEED, r.comm_d, comm_c, comm_r_last, cache, r.sector_dir / "sealed")


@pytest.mark.slow
def test_8mib_seal_and_full_check(tmp_path):
    piece = tmp_path / "piece.bin"
    piece.write_bytes(os.urandom(1 << 20))
    r = seal_sector(seal_proof("StackedDrg8MiBV1_1"), SectorID(1000, 1), os.urandom(31) + b"\0", SEED, tmp_path,
                    [piece], pc2_procs=2, full=True)
    assert r.verified and r.full_check == []
    assert (r.sector_dir / "cache" / "sc-02-data-tree-r-last.dat").stat().st_size == 18720
    assert (r.sector_dir / "cache" / "sc-02-data-tree-c.dat").stat().st_size == 9586976
