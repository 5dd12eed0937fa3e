"""Filecoin addresses against go-address's published vectors (filecoin-project/go-address,
commit 4e4546cbe9330f356acf8514c7e86f1ef0871118, address_test.go)."""

import pytest

from appliance.chain import address
from appliance.chain.address import AddressError


@pytest.mark.parametrize("actor_id, text", [
    (0, "t00"), (1, "t01"), (10, "t010"), (150, "t0150"), (499, "t0499"), (1024, "t01024"),
    (1729, "t01729"), (999999, "t0999999"), ((1 << 63) - 1, "t09223372036854775807")])
def test_id_vectors(actor_id, text):   # TestVectorsIDAddress
    raw = address.new_id(actor_id)
    assert address.to_string(raw, "t") == text
    assert address.parse(text) == raw
    assert address.id_of(raw) == actor_id


SECP = [  # TestVectorSecp256k1Address: public key -> address
    (bytes([4, 148, 2, 250, 195, 126, 100, 50, 164, 22, 163, 160, 202, 84, 38, 181, 24, 90, 179, 178, 79, 97, 52,
            239, 162, 92, 228, 135, 200, 45, 46, 78, 19, 191, 69, 37, 17, 224, 210, 36, 84, 33, 248, 97, 59, 193,
            13, 114, 250, 33, 102, 102, 169, 108, 59, 193, 57, 32, 211, 255, 35, 63, 208, 188, 5]),
     "f15ihq5ibzwki2b4ep2f46avlkrqzhpqgtga7pdrq"),
    (bytes([4, 118, 135, 185, 16, 55, 155, 242, 140, 190, 58, 234, 103, 75, 18, 0, 12, 107, 125, 186, 70, 255, 192,
            95, 108, 148, 254, 42, 34, 187, 204, 38, 2, 255, 127, 92, 118, 242, 28, 165, 93, 54, 149, 145, 82, 176,
            225, 232, 135, 145, 124, 57, 53, 118, 238, 240, 147, 246, 30, 189, 58, 208, 111, 127, 218]),
     "f12fiakbhe2gwd5cnmrenekasyn6v5tnaxaqizq6a"),
]
ACTOR = [  # TestVectorActorAddress
    (bytes([118, 18, 129, 144, 205, 240, 104, 209, 65, 128, 68, 172, 192, 62, 11, 103, 129, 151, 13, 96]),
     "f24vg6ut43yw2h2jqydgbg2xq7x6f4kub3bg6as6i"),
    (bytes([44, 175, 184, 226, 224, 107, 186, 152, 234, 101, 124, 92, 245, 244, 32, 35, 170, 35, 232, 142]),
     "f25nml2cfbljvn4goqtclhifepvfnicv6g7mfmmvq"),
]
BLS = [  # TestVectorBLSAddress
    (bytes([173, 88, 223, 105, 110, 45, 78, 145, 234, 134, 200, 129, 233, 56, 186, 78, 168, 27, 57, 94, 18, 121,
            123, 132, 185, 207, 49, 75, 149, 70, 112, 94, 131, 156, 122, 153, 214, 6, 178, 71, 221, 180, 249, 172,
            122, 52, 20, 221]),
     "f3vvmn62lofvhjd2ugzca6sof2j2ubwok6cj4xxbfzz4yuxfkgobpihhd2thlanmsh3w2ptld2gqkn2jvlss4a"),
]


@pytest.mark.parametrize("make, data, text", [(address.new_secp256k1, d, t) for d, t in SECP]
                         + [(address.new_actor, d, t) for d, t in ACTOR]
                         + [(address.new_bls, d, t) for d, t in BLS])
def test_key_and_actor_vectors(make, data, text):
    raw = make(data)
    assert address.to_string(raw) == text
    assert address.to_string(raw, "t") == "t" + text[1:]
    assert address.parse(text) == raw and address.parse("t" + text[1:]) == raw


@pytest.mark.parametrize("namespace, sub, text", [   # TestDelegatedAddress
    (32, bytes([0xff] * 5), "f432f77777777x32lpna"),
    ((1 << 63) - 1, b"", "f49223372036854775807fiic6zsy"),
    ((1 << 63) - 1, bytes(54), "f49223372036854775807f" + "a" * 86 + "hwgiuam"),
])
def test_delegated_vectors(namespace, sub, text):
    raw = address.new_delegated(namespace, sub)
    assert address.to_string(raw) == text
    assert address.parse(text) == raw


@pytest.mark.parametrize("text, why", [   # TestInvalidStringAddresses, TestTrailingBits, TestIDMax
    ("Q2gfvuyh7v2sx3patm5k23wdzmhyhtmqctasbr23y", "unknown network"),
    ("t5gfvuyh7v2sx3patm5k23wdzmhyhtmqctasbr23y", "unknown protocol"),
    ("t2gfvuyh7v2sx3patm5k23wdzmhyhtmqctasbr24y", "checksum"),
    ("t0banananananannnnnnnnn", "invalid length"),
    ("t0banananananannnnnnn", "decimal"),
    ("t2gfvuyh7v2sx3patm1k23wdzmhyhtmqctasbr24y", "base32"),
    ("t2gfvuyh7v2sx3paTm1k23wdzmhyhtmqctasbr24y", "base32"),
    ("t2", "invalid length"), ("t1234q", "invalid length"), ("t", "invalid length"), ("t0", "invalid length"),
    ("a" * 116, "invalid length"),
    ("f1xpbyy4tkdx5si2bgo37dubc2xwv6fum5tk57mid", "trailing bits"),
    ("t09223372036854775808", r"below 2\^63"),
])
def test_invalid_strings(text, why):
    with pytest.raises(AddressError, match=why):
        address.parse(text)


def test_trailing_bits_good_twin_parses():
    assert address.parse("f1xpbyy4tkdx5si2bgo37dubc2xwv6fum5tk57mia")[0] == address.SECP256K1


@pytest.mark.parametrize("raw, why", [   # TestInvalidByteAddresses, TestIDEdgeCase, TestIDMax
    (bytes([5, 4, 4]), "unknown address protocol"),
    (bytes([0]), "no payload"),
    (bytes([1]) + bytes(19), "20 bytes"), (bytes([1]) + bytes(21), "20 bytes"),
    (bytes([2]) + bytes(19), "20 bytes"), (bytes([2]) + bytes(21), "20 bytes"),
    (bytes([3]) + bytes(47), "48 bytes"), (bytes([3]) + bytes(33), "48 bytes"),
    (bytes([4, 0]) + bytes(55), "longer than 54"),
    (bytes([4, 0xff]), "varint"),
    (bytes([0, 0x80]), "varint"),
    (bytes([0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), "varint"),
])
def test_invalid_bytes(raw, why):
    with pytest.raises(AddressError, match=why):
        address.validate(raw)
