"""Filecoin addresses: the byte form (protocol byte + payload) messages and actor state carry,
and the string form users type ("f01234", "f1…", "f2…", "f3…", "f410f…").

  f0  ID           payload = uvarint(actor id), id < 2^63; string = decimal id
  f1  secp256k1    payload = blake2b-160(uncompressed public key)
  f2  actor        payload = blake2b-160(creation data)
  f3  BLS          payload = 48-byte public key
  f4  delegated    payload = uvarint(namespace) + sub-address (<= 54 bytes);
                   string = "f4" + namespace + "f" + base32(sub-address + checksum)
f1/f2/f3 strings are base32 (lower case, no padding) of payload + checksum, where the
checksum is blake2b-32 over protocol byte + payload. "t" instead of "f" is a testnet address
with the same bytes.
"""

from __future__ import annotations

from ..core.sector import uvarint  # unsigned LEB128, as go-varint

import base64
import hashlib

ID, SECP256K1, ACTOR, BLS, DELEGATED = 0, 1, 2, 3, 4
PAYLOAD_HASH_LEN = 20
CHECKSUM_LEN = 4
BLS_KEY_LEN = 48
MAX_SUBADDRESS_LEN = 54
MAX_INT64_STRING_LEN = 19
MAX_STRING_LEN = 2 + MAX_INT64_STRING_LEN + 1 + 93
MAX_ID = (1 << 63) - 1


class AddressError(ValueError):
    pass


def checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=CHECKSUM_LEN).digest()


def _hash160(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=PAYLOAD_HASH_LEN).digest()


def _read_uvarint(data: bytes) -> tuple[int, int]:
    """-> (value, bytes used); minimal encodings of at most 9 bytes (multiformats varint)."""
    x = shift = 0
    for i, b in enumerate(data):
        if i >= 9:
            break
        x |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and i > 0:
                raise AddressError("varint not minimally encoded")
            return x, i + 1
        shift += 7
    raise AddressError("varint truncated or longer than 9 bytes")


# ---- constructors -----------------------------------------------------------------------------

def new_id(actor_id: int) -> bytes:
    if not isinstance(actor_id, int) or isinstance(actor_id, bool) or not (0 <= actor_id <= MAX_ID):
        raise AddressError(f"actor id {actor_id!r} out of range 0..2^63-1")
    return bytes([ID]) + uvarint(actor_id)


def new_secp256k1(public_key: bytes) -> bytes:
    return bytes([SECP256K1]) + _hash160(public_key)


def new_actor(data: bytes) -> bytes:
    return bytes([ACTOR]) + _hash160(data)


def new_bls(public_key: bytes) -> bytes:
    return validate(bytes([BLS]) + bytes(public_key))


def new_delegated(namespace: int, subaddress: bytes) -> bytes:
    if not (0 <= namespace <= MAX_ID):
        raise AddressError(f"namespace {namespace} out of range 0..2^63-1")
    return validate(bytes([DELEGATED]) + uvarint(namespace) + bytes(subaddress))


# ---- bytes ------------------------------------------------------------------------------------

def validate(raw: bytes) -> bytes:
    """Check an address's byte form; returns it unchanged."""
    raw = bytes(raw)
    if not raw:
        raise AddressError("empty address")
    protocol, payload = raw[0], raw[1:]
    if protocol == ID:
        if not payload:
            raise AddressError("ID address has no payload")
        value, used = _read_uvarint(payload)
        if used != len(payload):
            raise AddressError("ID address has bytes after its varint")
        if value > MAX_ID:
            raise AddressError("ID address must be below 2^63")
    elif protocol in (SECP256K1, ACTOR):
        if len(payload) != PAYLOAD_HASH_LEN:
            raise AddressError(f"f{protocol} address payload must be {PAYLOAD_HASH_LEN} bytes, got {len(payload)}")
    elif protocol == BLS:
        if len(payload) != BLS_KEY_LEN:
            raise AddressError(f"f3 address payload must be {BLS_KEY_LEN} bytes, got {len(payload)}")
    elif protocol == DELEGATED:
        namespace, used = _read_uvarint(payload)
        if namespace > MAX_ID:
            raise AddressError("delegated namespace must be below 2^63")
        if len(payload) - used > MAX_SUBADDRESS_LEN:
            raise AddressError(f"delegated sub-address longer than {MAX_SUBADDRESS_LEN} bytes")
    else:
        raise AddressError(f"unknown address protocol {protocol}")
    return raw


def id_of(raw: bytes) -> int:
    """The actor id of an f0 address's bytes."""
    raw = validate(raw)
    if raw[0] != ID:
        raise AddressError(f"not an ID (f0) address: protocol {raw[0]}")
    return _read_uvarint(raw[1:])[0]


# ---- strings ----------------------------------------------------------------------------------

def _b32encode(data: bytes) -> str:
    return base64.b32encode(data).decode().lower().rstrip("=")


def _b32decode(text: str) -> bytes:
    if text != text.lower():
        raise AddressError("address is not lower-case base32")
    try:
        data = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
    except ValueError:
        raise AddressError("address is not valid base32") from None
    if _b32encode(data) != text:
        raise AddressError("address has trailing bits in its base32")
    return data


def to_string(raw: bytes, network: str = "f") -> str:
    if network not in ("f", "t"):
        raise AddressError(f"unknown network prefix {network!r} (f or t)")
    raw = validate(raw)
    protocol, payload = raw[0], raw[1:]
    if protocol == ID:
        return f"{network}0{_read_uvarint(payload)[0]}"
    cksm = checksum(raw)
    if protocol == DELEGATED:
        namespace, used = _read_uvarint(payload)
        return f"{network}4{namespace}f{_b32encode(payload[used:] + cksm)}"
    return f"{network}{protocol}{_b32encode(payload + cksm)}"


def parse(text: str) -> bytes:
    """Address string -> bytes. Raises AddressError saying what is wrong."""
    if not isinstance(text, str):
        raise AddressError(f"address must be a string, got {type(text).__name__}")
    if len(text) > MAX_STRING_LEN or len(text) < 3:
        raise AddressError(f"address {text!r} has an invalid length")
    if text[0] not in "ft":
        raise AddressError(f"address {text!r}: unknown network (must start with f or t)")
    if text[1] not in "01234":
        raise AddressError(f"address {text!r}: unknown protocol {text[1]!r}")
    protocol, rest = int(text[1]), text[2:]
    if protocol == ID:
        if len(rest) > MAX_INT64_STRING_LEN:
            raise AddressError(f"address {text!r} has an invalid length")
        if not rest.isdigit() or not rest.isascii() or int(rest) > MAX_ID:
            raise AddressError(f"address {text!r}: ID must be a decimal below 2^63")
        return new_id(int(rest))
    if protocol == DELEGATED:
        ns_text, sep, sub_text = rest.partition("f")
        if not sep or not ns_text.isdigit() or not ns_text.isascii() or len(ns_text) > MAX_INT64_STRING_LEN:
            raise AddressError(f"address {text!r}: delegated address needs <namespace>f<base32>")
        body = _b32decode(sub_text)
        if len(body) < CHECKSUM_LEN:
            raise AddressError(f"address {text!r} has an invalid length")
        payload = uvarint(int(ns_text)) + body[:-CHECKSUM_LEN]
        if len(body) - CHECKSUM_LEN > MAX_SUBADDRESS_LEN:
            raise AddressError(f"address {text!r}: sub-address longer than {MAX_SUBADDRESS_LEN} bytes")
    else:
        body = _b32decode(rest)
        if len(body) < CHECKSUM_LEN:
            raise AddressError(f"address {text!r} has an invalid length")
        payload = body[:-CHECKSUM_LEN]
        want = PAYLOAD_HASH_LEN if protocol in (SECP256K1, ACTOR) else BLS_KEY_LEN
        if len(payload) != want:
            raise AddressError(f"address {text!r} has an invalid length")
    raw = bytes([protocol]) + payload
    if checksum(raw) != body[-CHECKSUM_LEN:]:
        raise AddressError(f"address {text!r}: checksum does not match")
    return validate(raw)
