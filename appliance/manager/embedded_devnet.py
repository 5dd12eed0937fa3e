"""The manager's default chain: the home's devnet, served on loopback with its Filecoin API
(chain.devnet_api), and the manager talking to it only through the Lotus client, so that the
path a farm on a real chain takes is the path every devnet run takes. The Devnet object stays
at hand for what is the devnet's own administration (the `Venus.Devnet*` methods behind
`damocles util chain ...`, tests moving its clock), never for the manager's chain reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ..chain.devnet import Devnet
from ..chain.devnet_api import DevnetAPIServer
from ..chain.lotus.settings import ChainAPIConfig


class EmbeddedDevnet:
    """The devnet's API server on 127.0.0.1 (a free port) and the [Common.API] settings that
    point a LotusChain at it. `seal_proofs`: the configured miners, created on the devnet when
    it lacks them (its genesis), before the manager reads anything through the API."""

    def __init__(self, home: Path, chain_config, seal_proofs: dict[int, int] | None, create: bool):
        self.server = DevnetAPIServer(home, chain_config, create=create)
        try:
            existing = {m.actor for m in self.devnet.miners()}
            for actor, proof in (seal_proofs or {}).items():
                if actor not in existing:
                    self.devnet.create_miner(actor, proof)
            self.server.start("127.0.0.1", 0)
        except BaseException:
            self.server.close()
            raise
        self.chain_api = ChainAPIConfig(self.server.api_info(), seal_proofs=dict(seal_proofs or {}))

    @property
    def devnet(self) -> Devnet:
        return self.server.devnet

    @property
    def url(self) -> str:
        return self.server.url

    def devnet_message_id(self, cid: str) -> str | None:
        """The devnet's own id of the message the API took as `cid` (None if it took none): what
        the devnet's records (Devnet.messages) name it by."""
        db = sqlite3.connect(f"file:{self.server.home / 'devnet-api.db'}?mode=ro", uri=True)
        try:
            row = db.execute("SELECT devnet_id FROM pushed WHERE cid = ?", (cid,)).fetchone()
        finally:
            db.close()
        return row[0] if row else None

    def reorg(self, depth: int, drop: bool) -> dict:
        """Devnet.reorg through the API (Venus.DevnetReorg): the messages named by their CIDs, and
        a dropped one's MsgUuid answer forgotten so that the outbox's resend is pooled again."""
        return self.server.api.reorg_cids(depth, drop)

    def close(self) -> None:
        self.server.close()

    def recovery_view(self) -> "RecoveryView":
        return RecoveryView(self.devnet, self.server.home / "devnet-api.db")


class RecoveryView:
    """The home's devnet as the guard compares it with manager.db (guard.open_stores): the
    Devnet's own records, each message named as the manager knows it, by the CID the API gave
    it and the outbox nonce its MsgUuid carries (message_uuid). A node answers neither
    (LotusChain.next_nonce, executed_messages); the embedded devnet can, so a manager.db
    restored from an older copy is caught, and rebuilt, as before there was an API between."""

    def __init__(self, devnet: Devnet, api_db: Path):
        self._devnet, self._api_db = devnet, api_db

    def __getattr__(self, name):          # sector, precommit, deal, ... as the devnet has them
        return getattr(self._devnet, name)

    def _pushed(self, miner: int) -> dict[int, tuple[int, str]]:
        """devnet nonce -> (outbox nonce, CID) of what the manager pushed through the API."""
        from ..chain.lotus.message import message_uuid
        db = sqlite3.connect(f"file:{self._api_db}?mode=ro", uri=True)    # the API's MsgUuid record (devnet_api)
        try:
            rows = db.execute("SELECT uuid, nonce, cid FROM pushed WHERE miner = ?", (miner,)).fetchall()
        finally:
            db.close()
        bound = max([n for _, n, _ in rows], default=-1) + len(rows) + 1
        outbox = {message_uuid(miner, n): n for n in range(bound)}
        return {dn: (outbox[u], cid) for u, dn, cid in rows if u in outbox and cid}

    def next_nonce(self, miner: int) -> int:
        return max((n for n, _ in self._pushed(miner).values()), default=-1) + 1

    def message_at_nonce(self, miner: int, nonce: int) -> dict | None:
        for dn, (n, cid) in self._pushed(miner).items():
            if n == nonce:
                found = self._devnet.message_at_nonce(miner, dn)
                return {**found, "id": cid} if found else None
        return None

    def executed_messages(self, miner: int) -> list[dict]:
        pushed = self._pushed(miner)
        out = []
        for m in self._devnet.executed_messages(miner):
            if m["nonce"] in pushed:
                n, cid = pushed[m["nonce"]]
                m = {**m, "id": cid, "nonce": n}
            out.append(m)
        return out
