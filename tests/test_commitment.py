import os

import pytest

from appliance.proofs import ProofError
from appliance.proofs.cid import cid_to_commitment, commd_to_cid, commr_to_cid
from appliance.proofs.commitment import (ZERO_COMMS, PieceInfo, aggregate_comm, comm_d_from_pieces, commp_bytes,
                                         piece_offsets, root_of_padded)
from appliance.proofs.fr32 import pad, unpad

from .vectors_commp import CC, ZERO

# go-commp-utils zerocomm/zerocomm.go PieceComms (commit 3493ca3)
ZERO_COMM_VECTORS = {
    2: "3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333",
    6: "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833",
    18: "65f29e5d98d246c38b388cfc06db1f6b021303c5a289000bdce832a9c3ec421c",
    30: "077e5fde35c50a9303a55009e3498a4ebedff39c42b710b730d8ec7ac7afa63e",
    31: "e64005a6bfe3777953b8ad6ef93f0fca1049b2041654f2a411f7702799cece02",
    36: "aaaa8c4cb40aacee1e02dc65424b2a6c8e99f803b72f7929c4101d7fae6bff32",
}


@pytest.mark.parametrize("k,hexval", ZERO_COMM_VECTORS.items())
def test_zero_commitments(k, hexval):
    assert ZERO_COMMS[k].hex() == hexval


@pytest.mark.parametrize("row", ZERO + CC)
def test_commp_hashhash_vectors(row):
    size, padded, cid, comm = row.split(",")
    byte = 0xCC if row in CC else 0
    info = commp_bytes(bytes([byte]) * int(size))
    assert (info.size, info.commitment.hex(), commd_to_cid(info.commitment)) == (int(padded), comm, cid)


def test_commp_streams_large_payload_like_whole():
    data = os.urandom(127 * 8192 * 3 + 5)   # several 1 MiB padded chunks plus a tail
    info = commp_bytes(data)
    padded = pad(data + bytes(info.size // 128 * 127 - len(data)))
    assert info.commitment == root_of_padded(padded)


def test_fr32_worked_examples():
    # the fr32 padding of rust-fil-proofs fr32/src/padding.rs: two zero bits after every 254 bits of data
    out = pad(bytes(range(127)))
    assert out[:36] == bytes(range(32)) + bytes.fromhex("8084888c")
    assert pad(b"\xff" * 127) == (b"\xff" * 31 + b"\x3f") * 4
    # fr32/src/reader.rs test_simple_127 (rust-fil-proofs 87348a749d80447d00c595af834a8ed73c09e4d9)
    p = pad(b"\xff" * 127)
    assert p[31] == 0b0011_1111 and p[32] == 0xFF


def test_fr32_roundtrip_and_refusal():
    data = os.urandom(127 * 33)
    assert unpad(pad(data)) == data
    with pytest.raises(ProofError, match="multiple of 127"):
        pad(b"x" * 128)
    with pytest.raises(ProofError, match="top bits set"):
        unpad(b"\xff" * 128)


def test_piece_alignment_rust_layout():
    # filecoin-proofs/tests/pieces.rs test_verify_padded_pieces: A(1) B(4) C(2) D(8) units of 128 bytes are laid out as
    # A P P P B C P P P P P P D P×8 (rust-fil-proofs 87348a749d80447d00c595af834a8ed73c09e4d9)
    unit = 128
    pieces = [PieceInfo(s * unit, commp_bytes(os.urandom(127 * s)).commitment) for s in (1, 4, 2, 8)]
    assert [o // unit for o in piece_offsets(pieces, 32 * unit)] == [0, 4, 8, 16]
    # and CommD of those pieces equals the root over that layout
    layout = bytearray(32 * unit)
    datas = [os.urandom(127 * s) for s in (1, 4, 2, 8)]
    pieces = [PieceInfo(len(pad(d)), commp_bytes(d).commitment) for d in datas]
    for d, off in zip(datas, piece_offsets(pieces, len(layout))):
        layout[off:off + len(pad(d))] = pad(d)
    assert comm_d_from_pieces(pieces, len(layout)) == root_of_padded(bytes(layout))
    assert aggregate_comm(pieces).size == 32 * unit


def test_comm_d_empty_and_too_big():
    # filecoin-proofs/tests/pieces.rs test_compute_comm_d_empty
    assert comm_d_from_pieces([], 2048).hex() == "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"
    big = PieceInfo(4096, bytes(32))
    with pytest.raises(ProofError, match="does not fit"):
        comm_d_from_pieces([big], 2048)
    with pytest.raises(ProofError, match="invalid piece size"):
        PieceInfo(1000, bytes(32))


def test_cids():
    comm = bytes.fromhex("c647b998c78282296cfd1160714228d43f3b054dfbbb77172b68115ba3c3b762")
    assert commr_to_cid(comm) == "bagboea4b5abcbrshxgmmpaucffwp2elaofbcrvb7hmcu3653o4lsw2arlor4hn3c"
    assert cid_to_commitment(commr_to_cid(comm)) == ("sealed", comm)
    assert cid_to_commitment("baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy")[0] == "unsealed"
    for bad in ("Qm123", "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi", "b!!!"):
        with pytest.raises(ProofError, match="invalid commitment CID"):
            cid_to_commitment(bad)
