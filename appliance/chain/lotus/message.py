"""Messages as Lotus takes them (chain/types/message.go) and the per-miner sending policy of
Damocles' config (damocles-manager/modules/config.go FeeConfig, `[Miners.Commitment.Pre]` etc.):

- `Sender`/`Senders`: the address the message comes from (of several, the one with the largest
  balance, as Damocles' SenderSelector picks); the miner's Worker when none is set;
- `GasFeeCap` set on the message (`MaxFeeCap` when GasFeeCap is unset, as FeeConfig.GetGasFeeCap);
- `GasOverEstimation`/`GasOverPremium` applied to the node's GasEstimateMessageGas answer and
  passed in the MessageSendSpec (Venus reads them there; Lotus ignores unknown fields);
- `MsgUuid` derived from the outbox's (miner, nonce): Lotus' MpoolPushMessage answers a second
  push with the same uuid with the message it signed the first time (node/impl/full/mpool.go),
  so a resend after a crash never sends twice.

The message CID is CIDv1, dag-cbor (0x71), blake2b-256 of the message's CBOR tuple
(Message.ToStorageBlock), in base32 ("bafy2bzace...")."""

from __future__ import annotations

import base64
import hashlib
import re
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .. import address as _address
from ..types import ChainError

ATTO = 10 ** 18
_UNITS = {"fil": ATTO, "millifil": 10 ** 15, "microfil": 10 ** 12, "nanofil": 10 ** 9, "picofil": 10 ** 6,
          "femtofil": 10 ** 3, "attofil": 1, "": ATTO}
# section of Damocles' per-miner config that each miner-actor method is sent under
SECTIONS = {"PreCommitSectorBatch": "Commitment.Pre", "PreCommitSectorBatch2": "Commitment.Pre",
            "ProveCommitSector": "Commitment.Prove", "ProveCommitAggregate": "Commitment.Prove",
            "ProveCommitSectors3": "Commitment.Prove", "TerminateSectors": "Commitment.Terminate",
            "SubmitWindowedPoSt": "PoSt", "DeclareFaults": "PoSt", "DeclareFaultsRecovered": "PoSt",
            "ProveReplicaUpdates": "SnapUp", "ProveReplicaUpdates3": "SnapUp"}
UUID_NAMESPACE = uuid.UUID("5d0c7e3a-3f2b-4c55-9d8e-6a1f0b2c4d17")      # ours, fixed forever


def parse_fil(value, field: str) -> int:
    """A FIL amount as Damocles writes it ("5 nanoFIL", "0.1 FIL", "1000 attofil") in attoFIL."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", value) if isinstance(value, str) else None
    if not m or m.group(2).lower() not in _UNITS:
        raise ChainError(f"{field}: expected an amount such as \"5 nanoFIL\" or \"0.01 FIL\", got {value!r}")
    try:
        atto = Decimal(m.group(1)) * _UNITS[m.group(2).lower()]
    except InvalidOperation:
        raise ChainError(f"{field}: {value!r} is not a number") from None
    if atto != atto.to_integral_value():
        raise ChainError(f"{field}: {value!r} is finer than 1 attoFIL")
    return int(atto)


@dataclass(frozen=True)
class SendPolicy:
    senders: tuple[str, ...] = ()          # empty: the miner's Worker
    gas_over_estimation: float = 1.2       # Damocles' defaultFeeConfig
    gas_over_premium: float = 0.0
    gas_fee_cap: int = 5 * 10 ** 9         # attoFIL (5 nanoFIL)

    def spec(self, msg_uuid: str) -> dict:
        """Lotus' MessageSendSpec (api/types.go), with Venus' two gas fields beside it."""
        return {"MaxFee": "0", "MsgUuid": msg_uuid, "MaximizeFeeCap": False,
                "GasOverEstimation": self.gas_over_estimation, "GasOverPremium": self.gas_over_premium}

    def apply_estimate(self, estimated: dict, given: dict | None = None) -> dict:
        """The node's estimate with our over-estimation and premium, fee cap from the config, for
        the fields the caller left out (`given`: GasLimit/GasFeeCap/GasPremium the outbox set,
        which are the message's as they are)."""
        given = {k: v for k, v in (given or {}).items() if v}
        out = dict(estimated)
        if self.gas_over_estimation > 0 and "GasLimit" not in given:
            out["GasLimit"] = int(int(estimated["GasLimit"]) * self.gas_over_estimation)
        if self.gas_over_premium > 0 and "GasPremium" not in given:
            out["GasPremium"] = str(int(Decimal(estimated["GasPremium"]) * Decimal(str(self.gas_over_premium))))
        if self.gas_fee_cap > 0 and "GasFeeCap" not in given:
            out["GasFeeCap"] = str(max(self.gas_fee_cap, int(out["GasPremium"])))
        out.update({k: (v if k == "GasLimit" else str(v)) for k, v in given.items()})
        return out


def policy_from_config(table: dict, where: str) -> SendPolicy:
    """One section's keys (Sender, Senders, GasOverEstimation, GasOverPremium, GasFeeCap, MaxFeeCap)."""
    senders = []
    if table.get("Sender"):
        senders.append(table["Sender"])
    extra = table.get("Senders") or []
    if not isinstance(extra, list) or not all(isinstance(s, str) for s in extra):
        raise ChainError(f"{where}.Senders: expected a list of addresses")
    senders += [s for s in extra if s not in senders]
    if not all(isinstance(s, str) and re.fullmatch(r"[ft][0-4][0-9a-z]+", s) for s in senders):
        raise ChainError(f"{where}.Sender: expected Filecoin addresses such as f01234 or f1..., got {senders!r}")
    d = SendPolicy()
    fee_cap = parse_fil(table["GasFeeCap"], f"{where}.GasFeeCap") if table.get("GasFeeCap") else 0
    if not fee_cap and table.get("MaxFeeCap"):
        fee_cap = parse_fil(table["MaxFeeCap"], f"{where}.MaxFeeCap")
    out = []
    for key, default in (("GasOverEstimation", d.gas_over_estimation), ("GasOverPremium", d.gas_over_premium)):
        v = table.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ChainError(f"{where}.{key}: expected a non-negative number, got {v!r}")
        out.append(float(v))
    return SendPolicy(tuple(senders), out[0], out[1], fee_cap or d.gas_fee_cap)


def message_uuid(miner: int, nonce: int) -> str:
    return str(uuid.uuid5(UUID_NAMESPACE, f"damocles-outbox/{miner}/{nonce}"))


def message_json(to: str, sender: str, method: int, params: bytes, value: int = 0, gas_fee_cap: int = 0) -> dict:
    return {"Version": 0, "To": to, "From": sender, "Nonce": 0, "Value": str(value), "GasLimit": 0,
            "GasFeeCap": str(gas_fee_cap), "GasPremium": "0", "Method": method, "Params": base64.b64encode(params).decode()}


# --------------------------------------------------------------------------- message CID

def _head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes([major << 5 | n])
    for size, info in ((1, 24), (2, 25), (4, 26), (8, 27)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | info]) + n.to_bytes(size, "big")
    raise ChainError(f"CBOR: {n} does not fit 64 bits")


def _cbor_int(n: int) -> bytes:
    return _head(0, n) if n >= 0 else _head(1, -1 - n)


def _cbor_bytes(b: bytes) -> bytes:
    return _head(2, len(b)) + b


def big_bytes(n: int) -> bytes:
    """go-state-types big.Int's CBOR bytes: empty for zero, else a sign byte and the magnitude."""
    if n == 0:
        return b""
    return bytes([0 if n > 0 else 1]) + abs(n).to_bytes((abs(n).bit_length() + 7) // 8, "big")


def address_bytes(address: str) -> bytes:
    try:
        return _address.parse(address)
    except ValueError as exc:
        raise ChainError(f"message address: {exc}") from None


def message_cbor(msg: dict) -> bytes:
    return (_head(4, 10) + _cbor_int(int(msg.get("Version", 0))) + _cbor_bytes(address_bytes(msg["To"]))
            + _cbor_bytes(address_bytes(msg["From"])) + _cbor_int(int(msg["Nonce"])) + _cbor_bytes(big_bytes(int(msg["Value"])))
            + _cbor_int(int(msg["GasLimit"])) + _cbor_bytes(big_bytes(int(msg["GasFeeCap"])))
            + _cbor_bytes(big_bytes(int(msg["GasPremium"]))) + _cbor_int(int(msg["Method"]))
            + _cbor_bytes(base64.b64decode(msg.get("Params") or "")))


def message_cid(msg: dict) -> str:
    digest = hashlib.blake2b(message_cbor(msg), digest_size=32).digest()
    raw = bytes([0x01, 0x71, 0xA0, 0xE4, 0x02, 0x20]) + digest     # v1, dag-cbor, blake2b-256 (0xb220), 32 bytes
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")
