import pytest

from appliance.core.proof_types import (POST_PROOFS, SEAL_PROOFS, ApiVersion, default_seal_proof, post_proof,
                                        seal_proof, sector_size)
from appliance.core.sector import SectorID
from appliance.core.units import format_bytes, parse_bytes, parse_duration


@pytest.mark.parametrize("text,value", [("2KiB", 2048), ("32GiB", 32 << 30), ("512MiB", 512 << 20), ("2048", 2048),
                                        ("1.5KiB", 1536), ("4G", 4 << 30), ("1KB", 1000), (" 8 MiB ", 8 << 20)])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "KiB", "2XB", "-1", "1.3B", "two"])
def test_parse_bytes_refuses(text):
    with pytest.raises(ValueError, match="invalid byte size"):
        parse_bytes(text)


def test_format_bytes():
    assert [format_bytes(n) for n in (2048, 8 << 20, 64 << 30, 100)] == ["2KiB", "8MiB", "64GiB", "100B"]


@pytest.mark.parametrize("text,value", [("90s", 90), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1.5s", 1.5),
                                        ("3", 3), (4, 4.0), ("1h2m3s", 3723)])
def test_parse_duration(text, value):
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["", "s", "1x", "1s2", "-1s", "1 s"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_seal_proof_numbers_and_names():
    # go-state-types abi/sector.go and rust-filecoin-proofs-api registry.rs
    assert seal_proof("StackedDrg2KiBV1").id == 0
    assert seal_proof("StackedDrg32GiBV1_1").id == 8
    assert seal_proof(9).name == "StackedDrg64GiBV1_1"
    assert seal_proof("StackedDrg2KiBV1_1_Feat_SyntheticPoRep").id == 10
    assert seal_proof("StackedDrg8MiBV1_2_Feat_NiPoRep").id == 16
    assert seal_proof("StackedDrg8MiBV1_2_Feat_NonInteractivePoRep").id == 16
    assert len(SEAL_PROOFS) == 20 and len(POST_PROOFS) == 15
    assert seal_proof(5).api_version == ApiVersion.V1_1_0
    assert seal_proof(0).api_version == ApiVersion.V1_0_0


def test_porep_id_layout():
    assert seal_proof(8).porep_id == bytes([8]) + bytes(31)


def test_per_size_parameters():
    s32 = sector_size("32GiB")
    assert (s32.nodes, s32.layers, s32.porep_partitions, s32.porep_challenges_per_partition) == (1 << 30, 11, 10, 18)
    assert s32.tree_shape == (8, 8, 0) and s32.tree_count == 8
    s64 = sector_size("64GiB")
    assert s64.tree_shape == (8, 8, 2) and s64.tree_count == 16 and s64.wpost_sectors_per_partition == 2300
    s2 = sector_size("2KiB")
    assert (s2.nodes, s2.layers, s2.porep_challenges_per_partition, s2.unpadded_bytes) == (64, 2, 2, 2032)


def test_post_proofs():
    assert post_proof("StackedDrgWindow2KiBV1_1").id == 10
    assert post_proof("StackedDrgWindow32GiBV1_2").id == 13   # the Rust API's name for the same type
    assert post_proof(3).winning and post_proof(3).challenge_count == 66
    assert default_seal_proof(sector_size("2KiB")).window_post.id == 10
    assert post_proof(13).sectors_per_partition == 2349


@pytest.mark.parametrize("bad", ["1KiB", "3GiB", "huge", ""])
def test_unknown_size(bad):
    with pytest.raises(ValueError, match="unknown sector size"):
        sector_size(bad)


@pytest.mark.parametrize("bad", ["StackedDrg2KiBV9", 20, "-1", "StackedDrgWindow2KiBV1_1"])
def test_unknown_seal_proof(bad):
    with pytest.raises(ValueError, match="unknown seal proof type"):
        seal_proof(bad)


def test_sector_id():
    s = SectorID(1000, 7)
    assert s.to_json() == {"Miner": 1000, "Number": 7}
    assert SectorID.from_json({"Miner": 1000, "Number": 7}) == s
    assert s.prover_id == bytes.fromhex("e807") + bytes(30)
    assert SectorID(123, 1).prover_id == bytes([0x7B]) + bytes(31)
    assert str(s) == "s-t01000-7"
    for bad in ({"Miner": -1, "Number": 1}, {"Miner": 1}, {"Miner": 1, "Number": "2"}, [1, 2],
                {"Miner": 1, "Number": 1 << 64}, {"Miner": True, "Number": 1}):
        with pytest.raises(ValueError, match="SectorID"):
            SectorID.from_json(bad)
