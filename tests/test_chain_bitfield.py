"""RLE+ bitfields against go-bitfield's published vectors (filecoin-project/go-bitfield, commit
7744913dd587070a5274a2cd6bd15daaed05ff70: rle/rleplus_test.go, rle/internal/rleplus/rleplus_test.go,
rle/rleplus_golden_test.go, the JSON form from rle/rleplus.go MarshalJSON)."""

from pathlib import Path

import pytest

from appliance.chain import bitfield
from appliance.chain.bitfield import BitfieldError

GOLDEN = bytes.fromhex((Path(__file__).parent / "fixtures" / "go_bitfield_golden_rle.hex").read_text().strip())
REFERENCE_SET = [0, 2, 4, 5, 6, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27]


def test_reference_encoding():
    # rle/rleplus_test.go TestDecode: the Rust reference output with the version header added
    assert bitfield.encode(REFERENCE_SET) == bytes([124, 71, 34, 2])
    assert bitfield.decode(bytes([124, 71, 34, 2])) == REFERENCE_SET


def test_golden_loop():
    # rle/rleplus_test.go TestGoldenLoop: decoding then re-encoding the golden bytes gives them back
    runs = bitfield.decode_runs(GOLDEN)
    assert bitfield.encode_runs(runs) == GOLDEN
    assert len(bitfield.decode(GOLDEN)) == sum(n for v, n in runs if v)


def test_big_numbers():
    # rle/internal/rleplus/rleplus_test.go "Encode for some big numbers": {2^63 .. 2^63+1023}
    numbers = [(1 << 63) + i for i in range(1024)]
    expected = bytes([0x00, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x30, 0x00, 0x40, 0x04])
    assert bitfield.encode(numbers) == expected
    assert bitfield.decode_runs(expected) == [(False, 1 << 63), (True, 1024)]


def test_max_run_encodes_and_overflow_is_refused():
    # "Encode with a run of math.MaxUint64": a zero run of 2^64-1 then one bit
    expected = bytes([0xe0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3f, 0x20])
    assert bitfield.encode_runs([(False, (1 << 64) - 1), (True, 1)]) == expected
    # those runs cover 2^64 bits: rle/rleplus_reader.go ValidateRLE refuses it ("RLE+ overflow")
    with pytest.raises(BitfieldError, match="overflow"):
        bitfield.decode_runs(expected)


def test_bad_encodings():
    with pytest.raises(BitfieldError, match="version"):
        bitfield.decode(bytes([0xff]))          # "Decode version check"
    with pytest.raises(BitfieldError, match="too long"):
        bitfield.decode(bytes([0xe0] + [0xff] * 11))   # "a run which is too long"
    with pytest.raises(BitfieldError, match="minimally"):
        bitfield.decode(bytes([0x0c, 0x00]))    # trailing zero byte
    with pytest.raises(BitfieldError, match="same value"):
        bitfield.encode_runs([(True, 5), (True, 8)])   # TestEncodeConsecutiveFails


def test_last_run_in_the_trimmed_zero_bits():
    # {1, 2}: bits 00 | 0 | 1 | 01 + 0100 -> a8 00, the trailing zero byte trimmed: the last run's
    # length ends in bits that are not written (go-bitfield's reader reads them as zeros)
    assert bitfield.encode([1, 2]) == bytes([0xa8])
    assert bitfield.decode(bytes([0xa8])) == [1, 2]


def test_empty_set():
    assert bitfield.encode([]) == b""
    assert bitfield.decode(b"") == []
    assert bitfield.runs_to_json([]) == [0]


def test_json_run_lengths():
    # rle/rleplus.go: "The set {0, 1, 2, 8, 9} ... would be marshalled as [0, 3, 5, 2]"
    assert bitfield.json_from_numbers([0, 1, 2, 8, 9]) == [0, 3, 5, 2]
    assert bitfield.numbers_from_json([0, 3, 5, 2]) == [0, 1, 2, 8, 9]
    assert bitfield.json_from_numbers([5]) == [5, 1]
    assert bitfield.numbers_from_json([0]) == []
    with pytest.raises(BitfieldError, match=r"Sectors\[2\]: a zero-length run"):
        bitfield.runs_from_json([1, 2, 0], "Sectors")   # "Cannot have a zero-length run except at start"
    with pytest.raises(BitfieldError, match="expected a list"):
        bitfield.runs_from_json("0,1", "Sectors")
