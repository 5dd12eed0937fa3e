"""Miner actor message params: the Lotus/Go JSON shape of go-state-types' params structs <->
their DAG-CBOR bytes, exactly as cbor_gen writes them (builtin/v19/miner/cbor_gen.go of
go-state-types; method numbers as builtin-actors' actors/miner/src/lib.rs).

cbor_gen writes every struct as a CBOR array of its fields in declaration order ("tuple"
encoding). Field encodings:
  uint64 / int64        CBOR major type 0 (or 1 for negatives), shortest header
  []byte                byte string; JSON: base64 (std, padded); empty may be given as null
  cid.Cid               tag 42 over 0x00 + the binary CID; JSON: {"/": "<cid string>"}
  *T (pointer)          CBOR null when absent; JSON null
  big.Int (TokenAmount) byte string: empty for 0, else sign byte (0 +, 1 -) + big-endian
                        magnitude; JSON: decimal string
  bitfield.BitField     byte string of RLE+; JSON: go-bitfield's run-length list
  address.Address       byte string of the address bytes; JSON: "f0123"-style string
  bool                  CBOR true / false
  []T                   array (at most 8192 elements, as cbor_gen checks)

decode_params is strict as the actors are: the bytes must be exactly what encode_params
writes for the decoded value (shortest headers, minimal RLE+), else ParamsError.
"""

from __future__ import annotations

import base64
import binascii

import cbor2

from . import address as _address
from . import bitfield as _bitfield

MAX_SLICE = 8192                 # cbor_gen's MaxLength for slices
MAX_BYTES = 2 << 20              # cbor_gen's ByteArrayMaxLen (2 MiB)
CID_TAG = 42


class ParamsError(ValueError):
    """Bad params: the message names the method and the field path (e.g. Sectors[0].SealedCID)."""


def _fail(path: str, what: str):
    raise ParamsError(f"{path}: {what}" if path else what)


# ---- field types ------------------------------------------------------------------------------
# Each type turns a JSON value into the Python value cbor2 encodes (to_cbor) and back (from_cbor).

class _Int:
    def __init__(self, lo: int, hi: int, name: str):
        self.lo, self.hi, self.name = lo, hi, name

    def to_cbor(self, v, path):
        if isinstance(v, bool) or not isinstance(v, int):
            _fail(path, f"expected an integer ({self.name}), got {v!r}")
        if not self.lo <= v <= self.hi:
            _fail(path, f"{v} out of range for {self.name}")
        return v

    def from_cbor(self, v, path):
        return self.to_cbor(v, path)


UINT64 = _Int(0, (1 << 64) - 1, "uint64")
INT64 = _Int(-(1 << 63), (1 << 63) - 1, "int64")


class _Bool:
    def to_cbor(self, v, path):
        if not isinstance(v, bool):
            _fail(path, f"expected true or false, got {v!r}")
        return v

    from_cbor = to_cbor


class _Bytes:
    def to_cbor(self, v, path):
        if v is None:
            return b""
        if not isinstance(v, str):
            _fail(path, f"expected base64 bytes, got {type(v).__name__}")
        try:
            raw = base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            _fail(path, "not valid base64")
        if len(raw) > MAX_BYTES:
            _fail(path, f"{len(raw)} bytes, more than {MAX_BYTES}")
        return raw

    def from_cbor(self, v, path):
        if not isinstance(v, bytes):
            _fail(path, "expected a byte string")
        return base64.b64encode(v).decode()


class _BigInt:
    def to_cbor(self, v, path):
        if isinstance(v, str):
            text = v.strip()
            if not text or not text.lstrip("-").isdigit() or not text.isascii():
                _fail(path, f"expected a decimal integer string, got {v!r}")
            v = int(text)
        elif isinstance(v, bool) or not isinstance(v, int):
            _fail(path, f"expected a decimal integer string, got {v!r}")
        if v == 0:
            return b""
        mag = abs(v)
        return bytes([0 if v > 0 else 1]) + mag.to_bytes((mag.bit_length() + 7) // 8, "big")

    def from_cbor(self, v, path):
        if not isinstance(v, bytes):
            _fail(path, "expected a big.Int byte string")
        if not v:
            return "0"
        if v[0] not in (0, 1) or len(v) == 1 or v[1] == 0:
            _fail(path, "malformed big.Int bytes (sign byte 0/1 then a minimal magnitude)")
        mag = int.from_bytes(v[1:], "big")
        return str(-mag if v[0] else mag)


class _Bitfield:
    def to_cbor(self, v, path):
        try:
            runs = _bitfield.runs_from_json(v, path)
        except _bitfield.BitfieldError as exc:
            raise ParamsError(str(exc)) from None          # already names path[i]
        try:
            return _bitfield.encode_runs(runs)
        except _bitfield.BitfieldError as exc:
            _fail(path, str(exc))

    def from_cbor(self, v, path):
        if not isinstance(v, bytes):
            _fail(path, "expected an RLE+ byte string")
        try:
            return _bitfield.runs_to_json(_bitfield.decode_runs(v))
        except _bitfield.BitfieldError as exc:
            _fail(path, str(exc))


class _Address:
    def to_cbor(self, v, path):
        try:
            return _address.parse(v)
        except _address.AddressError as exc:
            _fail(path, str(exc))

    def from_cbor(self, v, path):
        if not isinstance(v, bytes):
            _fail(path, "expected an address byte string")
        try:
            return _address.to_string(v)
        except _address.AddressError as exc:
            _fail(path, str(exc))


class _Cid:
    def to_cbor(self, v, path):
        if not isinstance(v, dict) or set(v) != {"/"} or not isinstance(v["/"], str):
            _fail(path, f'expected a CID as {{"/": "<cid>"}}, got {v!r}')
        try:
            raw = cid_to_bytes(v["/"])
        except ValueError as exc:
            _fail(path, str(exc))
        return cbor2.CBORTag(CID_TAG, b"\x00" + raw)

    def from_cbor(self, v, path):
        if not isinstance(v, cbor2.CBORTag) or v.tag != CID_TAG or not isinstance(v.value, bytes):
            _fail(path, "expected a CID (CBOR tag 42)")
        if not v.value.startswith(b"\x00"):
            _fail(path, "CID bytes lack the 0x00 multibase prefix")
        try:
            return {"/": cid_from_bytes(v.value[1:])}
        except ValueError as exc:
            _fail(path, str(exc))


class _Nullable:
    def __init__(self, inner):
        self.inner = inner

    def to_cbor(self, v, path):
        return None if v is None else self.inner.to_cbor(v, path)

    def from_cbor(self, v, path):
        return None if v is None else self.inner.from_cbor(v, path)


class _List:
    def __init__(self, item):
        self.item = item

    def to_cbor(self, v, path):
        if v is None:
            return []                       # Go writes a nil slice as JSON null
        if not isinstance(v, list):
            _fail(path, f"expected a list, got {type(v).__name__}")
        if len(v) > MAX_SLICE:
            _fail(path, f"{len(v)} elements, more than {MAX_SLICE}")
        return [self.item.to_cbor(x, f"{path}[{i}]") for i, x in enumerate(v)]

    def from_cbor(self, v, path):
        if not isinstance(v, list):
            _fail(path, "expected an array")
        if len(v) > MAX_SLICE:
            _fail(path, f"{len(v)} elements, more than {MAX_SLICE}")
        return [self.item.from_cbor(x, f"{path}[{i}]") for i, x in enumerate(v)]


class Struct:
    """A cbor_gen tuple struct: JSON object with exactly these fields <-> CBOR array."""

    def __init__(self, name: str, *fields: tuple[str, object]):
        self.name, self.fields = name, fields

    def to_cbor(self, v, path):
        if not isinstance(v, dict):
            _fail(path, f"expected an object ({self.name}), got {type(v).__name__}")
        names = [n for n, _ in self.fields]
        extra = sorted(set(v) - set(names))
        if extra:
            _fail(path, f"unknown field(s) {', '.join(extra)} in {self.name} (fields: {', '.join(names)})")
        out = []
        for name, typ in self.fields:
            sub = f"{path}.{name}" if path else name
            if name not in v and not isinstance(typ, _Nullable):
                _fail(sub, f"missing (required in {self.name})")
            out.append(typ.to_cbor(v.get(name), sub))
        return out

    def from_cbor(self, v, path):
        if not isinstance(v, list):
            _fail(path, f"expected an array ({self.name})")
        if len(v) != len(self.fields):
            _fail(path, f"{self.name} has {len(self.fields)} fields, got {len(v)}")
        return {name: typ.from_cbor(x, f"{path}.{name}" if path else name)
                for (name, typ), x in zip(self.fields, v)}


BYTES, BIGINT, BITFIELD, ADDRESS, CID, BOOL = _Bytes(), _BigInt(), _Bitfield(), _Address(), _Cid(), _Bool()


def List(t):  # noqa: N802 - reads like the Go type []T
    return _List(t)


def Nullable(t):  # noqa: N802 - reads like the Go type *T
    return _Nullable(t)


# ---- the params structs (go-state-types builtin/v19/miner/miner_types.go, proof/proof_types.go)

SectorPreCommitInfo = Struct(
    "SectorPreCommitInfo",
    ("SealProof", INT64), ("SectorNumber", UINT64), ("SealedCID", CID), ("SealRandEpoch", INT64),
    ("DealIDs", List(UINT64)), ("Expiration", INT64), ("UnsealedCid", Nullable(CID)))

VerifiedAllocationKey = Struct("VerifiedAllocationKey", ("Client", UINT64), ("ID", UINT64))
DataActivationNotification = Struct("DataActivationNotification", ("Address", ADDRESS), ("Payload", BYTES))
PieceActivationManifest = Struct(
    "PieceActivationManifest",
    ("CID", CID), ("Size", UINT64), ("VerifiedAllocationKey", Nullable(VerifiedAllocationKey)),
    ("Notify", List(DataActivationNotification)))
SectorActivationManifest = Struct(
    "SectorActivationManifest", ("SectorNumber", UINT64), ("Pieces", List(PieceActivationManifest)))
SectorUpdateManifest = Struct(
    "SectorUpdateManifest",
    ("Sector", UINT64), ("Deadline", UINT64), ("Partition", UINT64), ("NewSealedCID", CID),
    ("Pieces", List(PieceActivationManifest)))
PoStPartition = Struct("PoStPartition", ("Index", UINT64), ("Skipped", BITFIELD))
PoStProof = Struct("PoStProof", ("PoStProof", INT64), ("ProofBytes", BYTES))
FaultDeclaration = Struct("FaultDeclaration", ("Deadline", UINT64), ("Partition", UINT64), ("Sectors", BITFIELD))
RecoveryDeclaration = Struct("RecoveryDeclaration", ("Deadline", UINT64), ("Partition", UINT64), ("Sectors", BITFIELD))
TerminationDeclaration = Struct("TerminationDeclaration", ("Deadline", UINT64), ("Partition", UINT64), ("Sectors", BITFIELD))
SectorClaim = Struct("SectorClaim", ("SectorNumber", UINT64), ("MaintainClaims", List(UINT64)), ("DropClaims", List(UINT64)))
ExpirationExtension2 = Struct(
    "ExpirationExtension2",
    ("Deadline", UINT64), ("Partition", UINT64), ("Sectors", BITFIELD),
    ("SectorsWithClaims", List(SectorClaim)), ("NewExpiration", INT64))

PARAMS: dict[str, Struct] = {
    "ChangeWorkerAddress": Struct("ChangeWorkerAddressParams", ("NewWorker", ADDRESS), ("NewControlAddrs", List(ADDRESS))),
    "SubmitWindowedPoSt": Struct(
        "SubmitWindowedPoStParams",
        ("Deadline", UINT64), ("Partitions", List(PoStPartition)), ("Proofs", List(PoStProof)),
        ("ChainCommitEpoch", INT64), ("ChainCommitRand", BYTES)),
    "TerminateSectors": Struct("TerminateSectorsParams", ("Terminations", List(TerminationDeclaration))),
    "DeclareFaults": Struct("DeclareFaultsParams", ("Faults", List(FaultDeclaration))),
    "DeclareFaultsRecovered": Struct("DeclareFaultsRecoveredParams", ("Recoveries", List(RecoveryDeclaration))),
    "WithdrawBalance": Struct("WithdrawBalanceParams", ("AmountRequested", BIGINT)),
    "ProveCommitAggregate": Struct("ProveCommitAggregateParams", ("SectorNumbers", BITFIELD), ("AggregateProof", BYTES)),
    "PreCommitSectorBatch2": Struct("PreCommitSectorBatchParams2", ("Sectors", List(SectorPreCommitInfo))),
    "ExtendSectorExpiration2": Struct("ExtendSectorExpiration2Params", ("Extensions", List(ExpirationExtension2))),
    "ProveCommitSectors3": Struct(
        "ProveCommitSectors3Params",
        ("SectorActivations", List(SectorActivationManifest)), ("SectorProofs", List(BYTES)),
        ("AggregateProof", BYTES), ("AggregateProofType", Nullable(INT64)),
        ("RequireActivationSuccess", BOOL), ("RequireNotificationSuccess", BOOL)),
    "ProveReplicaUpdates3": Struct(
        "ProveReplicaUpdates3Params",
        ("SectorUpdates", List(SectorUpdateManifest)), ("SectorProofs", List(BYTES)), ("AggregateProof", BYTES),
        ("UpdateProofsType", INT64), ("AggregateProofType", Nullable(INT64)),
        ("RequireActivationSuccess", BOOL), ("RequireNotificationSuccess", BOOL)),
}

# builtin-actors actors/miner/src/lib.rs `enum Method` (b0a3bdd). ProveCommitAggregate (26) is
# deprecated there by FIP-0101 (aggregates go in ProveCommitSectors3.AggregateProof); it stays
# here so params from networks before that can still be read and written.
METHODS: dict[str, int] = {
    "ChangeWorkerAddress": 3,
    "SubmitWindowedPoSt": 5,
    "TerminateSectors": 9,
    "DeclareFaults": 10,
    "DeclareFaultsRecovered": 11,
    "WithdrawBalance": 16,
    "ProveCommitAggregate": 26,
    "PreCommitSectorBatch2": 28,
    "ExtendSectorExpiration2": 32,
    "ProveCommitSectors3": 34,
    "ProveReplicaUpdates3": 35,
}
DEPRECATED = frozenset({"ProveCommitAggregate"})
_NAMES = {n: m for m, n in METHODS.items()}


def method_number(name: str) -> int:
    try:
        return METHODS[name]
    except KeyError:
        raise ParamsError(f"unknown miner method {name!r} (known: {', '.join(METHODS)})") from None


def method_name(number: int) -> str:
    try:
        return _NAMES[number]
    except (KeyError, TypeError):
        raise ParamsError(f"unknown miner method number {number!r}") from None


def _schema(name: str) -> Struct:
    try:
        return PARAMS[name]
    except KeyError:
        raise ParamsError(f"unknown miner method {name!r} (known: {', '.join(METHODS)})") from None


def encode_params(name: str, params: dict) -> bytes:
    """Go-JSON params of miner method `name` -> the DAG-CBOR bytes the actor decodes."""
    schema = _schema(name)
    try:
        return cbor2.dumps(schema.to_cbor(params, ""))
    except ParamsError as exc:
        raise ParamsError(f"{name} params: {exc}") from None


def decode_params(name: str, data: bytes) -> dict:
    """DAG-CBOR params of miner method `name` -> their Go-JSON shape. Strict: the bytes must be
    canonical (re-encoding the result gives them back)."""
    schema = _schema(name)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParamsError(f"{name} params: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    try:
        value = cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError, EOFError) as exc:
        raise ParamsError(f"{name} params: not valid CBOR: {exc}") from None
    try:
        out = schema.from_cbor(value, "")
    except ParamsError as exc:
        raise ParamsError(f"{name} params: {exc}") from None
    if encode_params(name, out) != data:
        raise ParamsError(f"{name} params: not canonical DAG-CBOR (non-minimal headers, lengths or encodings)")
    return out


# ---- data activation: pieces notified to the market actor -----------------------------------
# builtin-actors' market actor reads a piece's notification payload as the CBOR of its deal id
# (actors/market/src/lib.rs sector_content_changed: deserialize(&piece.payload, "deal id")).

MARKET_ACTOR = "f05"
SNARK_PACK_V2 = 1                # abi.RegisteredAggregationProof_SnarkPackV2


def market_piece(deal_id: int, piece_cid: str, piece_size: int) -> dict:
    """The PieceActivationManifest of a deal's piece, notifying the market actor of the deal."""
    return {"CID": {"/": piece_cid}, "Size": piece_size, "VerifiedAllocationKey": None,
            "Notify": [{"Address": MARKET_ACTOR, "Payload": base64.b64encode(cbor2.dumps(UINT64.to_cbor(deal_id, "deal id"))).decode()}]}


def notified_deal(payload_b64: str, path: str) -> int:
    """The deal id a market notification's payload carries (ParamsError naming `path` otherwise)."""
    raw = _Bytes().to_cbor(payload_b64, path)
    try:
        value = cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, EOFError):
        _fail(path, "not the CBOR of a deal id")
    deal_id = UINT64.from_cbor(value, path)
    if cbor2.dumps(deal_id) != raw:
        _fail(path, "not the canonical CBOR of a deal id")
    return deal_id


def canonical(name: str, params: dict) -> dict:
    """Params exactly as an actor would see them after the chain decodes the message: the same
    dict (Go JSON shape) when it is well-formed, ParamsError naming the field otherwise."""
    return decode_params(name, encode_params(name, params))


# ---- CIDs -------------------------------------------------------------------------------------
# Binary CIDv1 = uvarint(1) uvarint(codec) multihash; CIDv0 = a sha2-256 multihash (0x12 0x20 + 32
# bytes), written in base58btc ("Qm…"). CIDv1 strings here are multibase base32 lower ("b…").

_B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def _read_uvarint(data: bytes, pos: int) -> tuple[int, int]:
    x = shift = 0
    for i in range(9):
        if pos + i >= len(data):
            break
        b = data[pos + i]
        x |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and i > 0:
                raise ValueError("CID varint not minimally encoded")
            return x, pos + i + 1
        shift += 7
    raise ValueError("CID varint truncated")


def _check_cid_bytes(raw: bytes) -> None:
    if len(raw) == 34 and raw[:2] == b"\x12\x20":
        return                                        # CIDv0
    version, pos = _read_uvarint(raw, 0)
    if version != 1:
        raise ValueError(f"CID version {version} is not 1")
    _, pos = _read_uvarint(raw, pos)                  # codec
    _, pos = _read_uvarint(raw, pos)                  # multihash function
    length, pos = _read_uvarint(raw, pos)
    if len(raw) - pos != length:
        raise ValueError(f"CID digest is {len(raw) - pos} bytes, its header says {length}")


def cid_to_bytes(text: str) -> bytes:
    """A CID string -> its binary form."""
    if text.startswith("Qm") and len(text) == 46:
        n = 0
        for ch in text:
            if ch not in _B58:
                raise ValueError(f"CID {text!r} is not base58btc")
            n = n * 58 + _B58.index(ch)
        raw = n.to_bytes(34, "big")
    elif text.startswith("b"):
        body = text[1:]
        if body != body.lower():
            raise ValueError(f"CID {text!r} is not lower-case base32")
        try:
            raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        except (binascii.Error, ValueError):
            raise ValueError(f"CID {text!r} is not base32") from None
    else:
        raise ValueError(f"CID {text!r}: expected a base32 CIDv1 ('b…') or a CIDv0 ('Qm…')")
    try:
        _check_cid_bytes(raw)
    except ValueError as exc:
        raise ValueError(f"CID {text!r}: {exc}") from None
    if cid_from_bytes(raw) != text:
        raise ValueError(f"CID {text!r} is not in its canonical form")
    return raw


def cid_from_bytes(raw: bytes) -> str:
    """A binary CID -> its string (base32 for v1, base58btc for v0)."""
    _check_cid_bytes(raw)
    if len(raw) == 34 and raw[:2] == b"\x12\x20":
        n = int.from_bytes(raw, "big")
        out = ""
        while n:
            n, r = divmod(n, 58)
            out = _B58[r] + out
        return out
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")
