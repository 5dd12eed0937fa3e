"""Money on the devnet's Filecoin API, as Lotus answers it (build/openrpc/full.json, node/impl/full/
gas.go and mpool.go at Lotus b835fab7): balances and the miner's funds read from the devnet's
money (devnet_money.py), GasEstimateMessageGas filling only the fields left zero (the devnet's
gas model x 1.25, Lotus' minimum premium, a fee cap for twice the base fee) then CapGasFee with
the spec's MaxFee (0.07 FIL when unset), and the mpool's funds check (gas limit x fee cap +
value) before a push.

Addresses: a devnet miner's worker is shown as the ID address f0<1e9 + actor> (devnet_api); its
balance is the devnet's account of that worker. Any other address is its own account (a
`Send` to a miner may come from anyone: the faucet's accounts, an owner)."""

from __future__ import annotations

from . import address as _address
from . import money
from .types import ChainError

DEFAULT_MAX_FEE = 7 * 10 ** 16          # Lotus' DefaultDefaultMaxFee, 0.07 FIL
SEND = 0                                 # method 0: a plain transfer


def parse_big(v, field: str) -> int:
    """A TokenAmount as Lotus writes it: a decimal string (an integer is taken too)."""
    if isinstance(v, int) and not isinstance(v, bool):
        out = v
    elif isinstance(v, str) and v.lstrip("-").isdigit():
        out = int(v)
    else:
        raise ChainError(f"{field}: expected a decimal string of attoFIL, got {v!r}")
    if out < 0:
        raise ChainError(f"{field}: {out} is negative")
    return out


def parse_gas_limit(v, field: str = "msg.GasLimit") -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ChainError(f"{field}: expected a non-negative integer, got {v!r}")
    return v


def check_address(v, field: str) -> str:
    if not isinstance(v, str):
        raise ChainError(f"{field}: expected an address string, got {v!r}")
    try:
        _address.parse(v)
    except ValueError as exc:
        raise ChainError(f"{field}: {exc}") from None
    return v


def cap_gas_fee(msg: dict, spec) -> None:
    """Lotus' messagepool.CapGasFee: fee cap x gas limit at most MaxFee (or the fee cap set to
    exactly that with MaximizeFeeCap); the premium never above the fee cap."""
    spec = spec if isinstance(spec, dict) else {}
    max_fee = parse_big(spec.get("MaxFee") or "0", "spec.MaxFee") or DEFAULT_MAX_FEE
    limit, fee_cap = int(msg["GasLimit"]), int(msg["GasFeeCap"])
    if limit and (spec.get("MaximizeFeeCap") or fee_cap * limit > max_fee):
        fee_cap = max_fee // limit
    msg["GasFeeCap"] = str(fee_cap)
    msg["GasPremium"] = str(min(fee_cap, int(msg["GasPremium"])))


def estimate_message_gas(devnet, miner: int, method: str, params: dict, msg: dict, spec) -> dict:
    """GasEstimateMessageGas: what the sender set is kept; zero fields are filled as Lotus does."""
    out = dict(msg)
    limit = parse_gas_limit(msg.get("GasLimit") or 0)
    fee_cap = parse_big(msg.get("GasFeeCap") or "0", "msg.GasFeeCap")
    premium = parse_big(msg.get("GasPremium") or "0", "msg.GasPremium")
    if not limit:
        num, den = money.GAS_OVERESTIMATION
        limit = min(devnet.estimate_gas(miner, method, params) * num // den, devnet.policy.block_gas_limit)
    premium = premium or money.DEFAULT_PREMIUM
    fee_cap = fee_cap or max(money.DEFAULT_FEE_CAP, 2 * devnet.base_fee() + premium)
    out.update(GasLimit=limit, GasFeeCap=str(fee_cap), GasPremium=str(premium))
    cap_gas_fee(out, spec)
    return out


def check_funds(have: int, msg: dict) -> None:
    """Lotus' MpoolPushMessage check: the sender holds gas limit x fee cap + value."""
    need = money.required_funds(int(msg["GasLimit"]), int(msg["GasFeeCap"]), int(msg.get("Value") or 0))
    if have < need:
        raise ChainError(f"mpool push: not enough funds: {have} < {need}")


def block_header(miner: str, epoch: int, parents: list[dict], base_fee: int) -> dict:
    """The head's block as ChainHead shows it: what the devnet has (height, parents, the base fee
    its messages pay); what it lacks (tickets, proofs, state roots, signatures) is null."""
    return {"Miner": miner, "Ticket": None, "ElectionProof": None, "BeaconEntries": [], "WinPoStProof": [],
            "Parents": parents, "ParentWeight": str(max(epoch, 0)), "Height": epoch, "ParentStateRoot": None,
            "ParentMessageReceipts": None, "Messages": None, "BLSAggregate": None, "Timestamp": 0, "BlockSig": None,
            "ForkSignaling": 0, "ParentBaseFee": str(base_fee)}
