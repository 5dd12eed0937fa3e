"""The manager's view of a miner's money and of chain messages, for `damocles util sealer actor
balance|add-balance|withdraw` and `util message wait|search` (Damocles' commands, which ask the
node and sophon-messager directly; ours ask the manager, which asks its chain). Amounts travel as
decimal strings of attoFIL, as Lotus' JSON writes big ints."""

from __future__ import annotations

from ..chain import address as _address
from ..chain.types import ChainError
from ..rpc import INVALID_PARAMS, RPCError
from ..rpc.server import RPCServer
from ..rpc.wire import optional, stored_u64, string


def amount(v, field: str) -> int:
    """A big int as Lotus writes it: a decimal string of attoFIL (an integer is taken too)."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return v
    if isinstance(v, str) and v.isdigit():
        return int(v)
    raise RPCError(INVALID_PARAMS, f"{field}: {v!r} is not a non-negative decimal string of attoFIL")


class Funds:
    def __init__(self, chain, committer):
        self.chain, self.committer = chain, committer

    def _ask(self, what: str, value):
        if value is None:
            raise RPCError(INVALID_PARAMS, f"{what}: this chain cannot tell (no money support)")
        return value

    def actor_balance(self, miner: int) -> dict:
        """The miner actor's balance, what is locked and available, and its worker's balance."""
        try:
            info = self.chain.miner_info(miner)
        except ChainError as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None
        out = {"Miner": f"f0{miner}", "Balance": self._ask("balance", self.chain.balance(f"f0{miner}")),
               "Available": self.chain.available_balance(miner), "Worker": info.worker,
               "WorkerBalance": self.chain.balance(info.worker)}
        locked = getattr(self.chain, "locked_funds", None)
        out.update(locked(miner) if locked else {})
        return {k: str(v) if isinstance(v, int) else v for k, v in out.items()}

    def add_balance(self, miner: int, sender: str, value: int) -> str:
        """A plain transfer (method 0) of `value` from `sender` to the miner actor; its message id."""
        try:
            _address.parse(sender)
        except _address.AddressError as exc:
            raise RPCError(INVALID_PARAMS, f"from: {exc}") from None
        try:
            self.chain.miner_info(miner)
            return self.chain.push_message(miner, "Send", {}, None, value=value, sender=sender)
        except ChainError as exc:
            raise RPCError(INVALID_PARAMS, f"add-balance: {exc}") from None

    def withdraw(self, miner: int, requested: int | None) -> dict:
        """WithdrawBalance from the owner, through the outbox (the owner's nonce, journalled):
        `requested` or, when None, all of the available balance, refused above it."""
        available = self._ask("available balance", self.chain.available_balance(miner))
        requested = available if requested is None else requested
        if requested > available:
            raise RPCError(INVALID_PARAMS, f"can't withdraw more funds than available; requested: {requested}; "
                                           f"available: {available}")
        try:
            msg = self.committer.send(miner, "withdraw", "WithdrawBalance", {"AmountRequested": str(requested)}, [])
        except ChainError as exc:
            raise RPCError(INVALID_PARAMS, f"withdraw: {exc}") from None
        return {"Message": msg, "Requested": str(requested)}

    def message_search(self, message: str) -> dict:
        """A message's state (sophon-messager's names): FillMsg in the pool, OnChainMsg with its
        receipt; a replaced message answers with its replacement."""
        info = getattr(self.chain, "message_info", None)
        try:
            if info is not None:
                return info(message)
            receipt = self.chain.receipt(message)
            head = self.chain.head()
            # a node searches a pending message and an unknown one alike (null): ask whether it has it
            known = receipt is not None or getattr(self.chain, "message_known", lambda _: True)(message)
        except ChainError as exc:
            raise RPCError(INVALID_PARAMS, str(exc)) from None
        if not known:
            raise RPCError(INVALID_PARAMS, f"message {message} not found")
        if receipt is None:
            return {"ID": message, "SignedCid": message, "State": "FillMsg", "Height": 0, "Confidence": 0, "Receipt": None}
        return {"ID": message, "SignedCid": receipt.message, "State": "OnChainMsg", "Height": receipt.epoch,
                "Confidence": head - receipt.epoch,
                "Receipt": {"ExitCode": receipt.exit_code, "Return": None, "GasUsed": receipt.gas_used, "Error": receipt.error}}


def register_funds(server: RPCServer, chain, committer) -> None:
    funds = Funds(chain, committer)
    server.register("Venus.ActorBalance", funds.actor_balance, "read", [("miner", stored_u64)])
    server.register("Venus.ActorAddBalance", funds.add_balance, "admin",
                    [("miner", stored_u64), ("from", string), ("value", amount)])
    server.register("Venus.ActorWithdraw", funds.withdraw, "admin", [("miner", stored_u64), ("amount", optional(amount))])
    server.register("Venus.MessageSearch", funds.message_search, "read", [("message", string)])
