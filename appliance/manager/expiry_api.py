"""The manager's RPC for a sector's expiry (ours: Damocles' CLI reads the chain itself), behind
`util sealer sectors check-expire | expired | extend` (expiry.py says what each does)."""

from __future__ import annotations

from ..chain.types import ChainError
from ..rpc import INVALID_PARAMS, RPCError
from ..rpc.server import RPCServer
from ..rpc.wire import boolean, i64, list_of, optional, stored_u64, struct, u64
from .expiry import ExpiryError, Expiry, ExtendRequest
from .funds import amount

_extend_keys = {"Numbers": optional(list_of(u64)), "Exclude": optional(list_of(u64)), "From": optional(i64),
                "To": optional(i64), "Extension": optional(u64), "NewExpiration": optional(i64), "OnlyCC": optional(boolean),
                "Tolerance": optional(u64), "MaxFee": optional(amount), "MaxSectors": optional(u64),
                "ReallyDoIt": optional(boolean)}
extend_spec = struct(_extend_keys, optional_keys=tuple(_extend_keys))


def extend_request(spec: dict) -> ExtendRequest:
    given = {k: v for k, v in spec.items() if v is not None}
    defaults = ExtendRequest()
    return ExtendRequest(numbers=tuple(given.get("Numbers", ())), exclude=tuple(given.get("Exclude", ())),
                         from_epoch=given.get("From"), to_epoch=given.get("To"),
                         extension=given.get("Extension", defaults.extension), new_expiration=given.get("NewExpiration"),
                         only_cc=given.get("OnlyCC", False), tolerance=given.get("Tolerance", defaults.tolerance),
                         max_fee=given.get("MaxFee", 0), max_sectors=given.get("MaxSectors", 0),
                         really_do_it=given.get("ReallyDoIt", False))


def _answer(fn):
    """A refused request or a chain that cannot answer is the caller's error, said in words."""
    def call(*args):
        try:
            return fn(*args)
        except (ExpiryError, ChainError) as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None
    return call


def register_expiry(server: RPCServer, expiry: Expiry) -> Expiry:
    server.register("Venus.SectorsCheckExpire", _answer(expiry.check_expire), "read", [("miner", stored_u64), ("cutoff", i64)])
    server.register("Venus.SectorsExpired", _answer(expiry.expired), "read",
                    [("miner", stored_u64), ("showRemoved", boolean), ("expiredEpoch", optional(i64))])
    server.register("Venus.SectorsRemoveExpired", _answer(expiry.remove_expired), "admin",
                    [("miner", stored_u64), ("expiredEpoch", optional(i64)), ("confirmCount", u64)])
    server.register("Venus.SectorsExtend", _answer(lambda miner, spec: expiry.extend(miner, extend_request(spec))), "admin",
                    [("miner", stored_u64), ("spec", extend_spec)])
    return expiry
