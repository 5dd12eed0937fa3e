"""The sophon-messager path (`[Common.API] Messager`), as Damocles sends (damocles-manager
modules/impl/commitmgr/commitmgr.go pushMessage): the message goes to the messager with our own
id (`Message.PushMessageWithId`), which fills gas and nonce, signs and pushes it; its state and
receipt are read back by that id (`Message.GetMessageByUid`; venus-shared types/messager
message.go for the shape, sophon-messager 8254efe8 for the calls).

A second push of an id the messager already has fails there (a duplicate key), so the id is
looked up first (`Message.HasMessageByUid`, as Damocles does) and, when present, must name the
same message: the outbox's resend after a crash never sends twice."""

from __future__ import annotations

from ..types import ChainError, Receipt
from . import shapes
from .client import LotusClient
from .message import SendPolicy

UNFILLED, FILLED, ON_CHAIN, FAILED, NONCE_CONFLICT = 1, 2, 3, 4, 5     # venus-shared MessageState


def send_spec(policy: SendPolicy) -> dict:
    """venus-shared messager SendSpec (its JSON keys are lower camel case)."""
    return {"expireEpoch": 0, "gasOverEstimation": policy.gas_over_estimation, "maxFee": "0",
            "gasOverPremium": policy.gas_over_premium}


class Messager:
    def __init__(self, client: LotusClient):
        self.client = client

    def push(self, msg_id: str, msg: dict, policy: SendPolicy) -> str:
        if self.client.call("Message.HasMessageByUid", msg_id):
            known = self._get(msg_id)
            if (known.get("To"), known.get("Method"), known.get("Params")) != (msg["To"], msg["Method"], msg["Params"]):
                raise ChainError(f"messager id {msg_id} names another message (method {known.get('Method')}), not this one")
            return msg_id
        got = self.client.call("Message.PushMessageWithId", msg_id, msg, send_spec(policy))
        if got != msg_id:
            raise ChainError(f"the messager answered id {got!r} for the message pushed as {msg_id}")
        return msg_id

    def _get(self, msg_id: str) -> dict:
        m = self.client.call("Message.GetMessageByUid", msg_id)
        if not isinstance(m, dict):
            raise ChainError(f"Message.GetMessageByUid({msg_id}): expected a message, got {m!r}")
        return m

    def receipt(self, msg_id: str) -> Receipt | None:
        """The receipt once the messager saw the message on chain (or another with its nonce,
        NonceConflictMsg, as Damocles takes it); None while it is being filled or pushed."""
        m = self._get(msg_id)
        state = shapes.integer(m.get("State"), "Message.State")
        if state == FAILED:
            raise ChainError(f"the messager could not send {msg_id}: {m.get('ErrorMsg') or 'failed'}")
        if state not in (ON_CHAIN, NONCE_CONFLICT):
            return None
        r = shapes.field(m, "Receipt", "Message")
        code = shapes.integer(shapes.field(r, "ExitCode", "Message.Receipt"), "Message.Receipt.ExitCode")
        return Receipt(msg_id, code, None if code == 0 else f"exit code {code}",
                       shapes.integer(shapes.field(m, "Height", "Message"), "Message.Height"))

    def wait(self, msg_id: str, confidence: int) -> Receipt:
        self.client.call("Message.WaitMessage", msg_id, confidence)
        r = self.receipt(msg_id)
        if r is None:
            raise ChainError(f"Message.WaitMessage({msg_id}) returned before the message was on chain")
        return r
