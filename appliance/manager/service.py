"""The manager process: its home directory, the chain (the home's devnet through its Filecoin
API by default, embedded_devnet; a node when `[Common.API] Chain` is set), state, sealer API, commitment
batching and the RPC server, started and stopped together.

Home layout: `sector-manager.cfg` (or an earlier version's `manager.toml`), `secret` (token
signing key, 0600), `manager.db` (the manager's state), `devnet.db` (the embedded chain's own
database), `devnet-secret` and `devnet-api.db` (its Filecoin API's token key and MsgUuid record)."""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from pathlib import Path

from ..chain.devnet import Devnet
from ..core.proof_types import seal_proof
from ..core.sector import sector_name
from ..core.units import format_duration
from ..rpc.auth import NetworkAllowList, SecretFile, load_or_create_secret
from ..rpc.server import RPCServer
from . import api
from .api_cli import register_cli
from .api_term import register_term
from .sector_import import register_import
from .expiry import Expiry
from .expiry_api import register_expiry
from .commitment import Committer
from .config import CONFIG_NAME, ManagerConfig, config_path, load_config, resolve_seal_proofs
from .config_file import DEVNET_CFG
from .funds import register_funds
from .poster import Poster
from .proving import Proving
from .rebuild import Rebuilder
from .snapup import SnapUp
from .sealer import Sealer
from .ext_prover import ExtProver, load_config as load_ext_prover_config, write_default as write_ext_prover_default
from .guard import open_stores
from .unseal import Unsealer
from .wdpost_jobs import WdPoStJobs

log = logging.getLogger("damocles.manager")
STOP_TIMEOUT = 15.0       # seconds the manager's loops get, all together, to finish their pass at stop

def init_home(home: Path, config_text: str = DEVNET_CFG) -> Path:
    """Create a manager home (sector-manager.cfg, secret, persist store directories, the devnet's
    miners); refuses a home that has a config already."""
    home.mkdir(parents=True, exist_ok=True)
    existing = config_path(home)
    if existing.exists():
        raise FileExistsError(f"{existing} already exists")
    cfg_path = home / CONFIG_NAME
    cfg_path.write_text(config_text)
    write_ext_prover_default(home)        # Damocles' ext-prover.cfg, all commented out
    load_or_create_secret(home / "secret")
    cfg = load_config(cfg_path)
    for s in cfg.persist_stores + cfg.piece_stores:
        s.path.mkdir(parents=True, exist_ok=True)
    if cfg.chain_api is None:           # a node's miners exist on that chain already
        chain = Devnet(home / "devnet.db", cfg.chain)     # genesis: the configured miners
        try:
            ensure_miners(chain, cfg)
        finally:
            chain.close()
    return cfg_path


def create_devnet_miners(devnet: Devnet, cfg: ManagerConfig) -> None:
    """Create on the devnet each configured miner it lacks (with the config's SealProof). A
    node's miners are only read (config.resolve_seal_proofs)."""
    existing = {m.actor for m in devnet.miners()}
    for m in cfg.miners:
        if m.actor not in existing and m.seal_proof is not None:
            devnet.create_miner(m.actor, m.seal_proof)


def ensure_miners(chain, cfg: ManagerConfig) -> None:
    """The devnet's missing miners created, then every miner's proof type taken from the chain."""
    if isinstance(chain, Devnet):
        create_devnet_miners(chain, cfg)
    resolve_seal_proofs(cfg, chain)


class ManagerService:
    """`chain`: what the manager reads and sends through (LotusChain, to a node or to the home's
    devnet's API); `devnet`: the home's Devnet when it runs one, for the devnet's own
    administration only (util chain, tests moving its clock), None against a node;
    `devnet_api`: that devnet's API server (its `url`), None against a node or in process.

    `_in_process_chain` is internal, never a user setting: the manager reads the Devnet object
    directly, without its API; only `damocles bench chain` sets it, to measure the API's cost."""

    def __init__(self, home: Path, config: ManagerConfig | None = None, rebuild_from_chain: bool = False,
                 ext_prover: bool = False, _in_process_chain: bool = False, lease=None, home_lock=None, state=None):
        """`lease`: the manager lease this process holds (manager.lease, `manager run`), on
        `state`, the state the service then uses: every write transaction checks it first, so that
        nothing is written once it is lost; close() lets it expire. `home_lock`: the home's lock
        when the caller took it already (released with the state)."""
        self.lease = lease
        self.home = Path(home)
        self.config = config or load_config(config_path(self.home))
        for w in self.config.warnings:
            log.warning(w)
        self.secret = SecretFile(self.home / "secret")     # read again when `manager token --rotate` replaces it
        self.state, self.chain, self.devnet_api = open_stores(
            self.home, self.config.chain, [m.actor for m in self.config.miners],
            rebuild_from_chain,      # refuses a state behind its chain
            self.config.persist_stores, self.config.piece_stores,
            self.config.chain_api,     # set: a Lotus/Venus node, not the devnet
            {m.actor: m.seal_proof for m in self.config.miners if m.seal_proof is not None}, _in_process_chain,
            store=self.config.db, home_lock=home_lock, state=state)
        if lease is not None:
            self.state.db.fence = lease.fence
        self.devnet = self.devnet_api.devnet if self.devnet_api else (self.chain if isinstance(self.chain, Devnet) else None)
        try:
            if self.devnet is not None:         # the devnet's genesis: the configured miners
                create_devnet_miners(self.devnet, self.config)
            resolve_seal_proofs(self.config, self.chain)  # a miner with no proof type anywhere is refused here
            # `run --ext-prover`: ext-prover.cfg's processors, started now (a bad entry refuses the start)
            self.ext_prover = ExtProver(load_ext_prover_config(self.home), self.home) if ext_prover else None
        except BaseException:
            self.close()
            raise
        self.sealer = Sealer(self.config, self.state, self.chain)
        self.committer = Committer(self.config, self.state, self.chain)
        self.jobs = WdPoStJobs(self.state, self.config.worker_prover)
        self.poster = Poster(self.config, self.state, self.chain, self.jobs, self.committer, self.sealer,
                             ext_prover=self.ext_prover)
        allow = NetworkAllowList(self.config.allow_networks) if self.config.allow_networks else None
        self.rpc = RPCServer(self.secret, allow, self.config.max_body)
        api.register(self.rpc, self.sealer, self.devnet,      # Venus.Devnet*: the devnet's own administration
                     reorg=self.devnet_api.reorg if self.devnet_api else None)
        register_funds(self.rpc, self.chain, self.committer)     # util sealer actor ..., util message ...
        api.register_market(self.rpc, self.sealer.market,
                            max((seal_proof(m.seal_proof).size.bytes for m in self.config.miners), default=2048))
        self.unsealer = Unsealer(self.config, self.state, self.chain, self.sealer.market, self.sealer)
        api.register_unseal(self.rpc, self.unsealer, self.sealer.limits)
        api.register_rebuild(self.rpc, Rebuilder(self.state, self.chain, self.sealer.market, self.poster), self.sealer.limits)
        self.snapup = SnapUp(self.config, self.state, self.chain, self.sealer.market, self.sealer, self.committer)
        api.register_snapup(self.rpc, self.snapup, self.sealer.limits)
        api.register_wdpost(self.rpc, self.jobs, self.sealer.limits)
        api.register_proving(self.rpc, Proving(self.chain, self.poster))
        register_cli(self.rpc, self)          # Damocles' SealerCliAPI, RandomnessAPI, MinerAPI
        register_import(self.rpc, self)       # util sealer sectors import, util storage attach
        self.terminator = register_term(self.rpc, self)    # terminate, remove, finalize, resend-pre/-prove
        self.expiry = register_expiry(self.rpc, Expiry(self.config, self.state, self.chain, self.committer))  # check-expire ...
        from ..web import attach as attach_web
        attach_web(self)          # the status page (/ui/), its sector actions, /metrics
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, listen: str | None = None) -> tuple[str, int]:
        host, _, port = (listen or self.config.listen).rpartition(":")
        try:    # the head known before the first request: the status page's ETag keys on it
            self.chain.head()
        except Exception as exc:      # noqa: BLE001 - the loops retry; the page shows no epoch meanwhile
            log.warning("chain head not read at start: %s", exc)
        addr = self.rpc.serve(host or "127.0.0.1", int(port))
        for target, name in ((self.committer.run, "commitment"), (self._housekeeping, "housekeeping"),
                             (self.poster.run, "poster"), (self.terminator.run, "terminate"),
                             (self.web.chain_views.run, "chain-views")):     # the status page's chain views
            t = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return addr

    def _housekeeping(self, stop: threading.Event) -> None:
        """Release, visibly, allocations of sectors that stopped reporting, deals held by sectors
        that stopped moving, workers that stopped pinging and pieces no deal uses."""
        c = self.config
        interval = max(0.05, min(60.0, c.release_after / 4, c.unreported_release_after / 4, c.worker_expiry / 4,
                                 c.deal_hold_timeout / 4, c.unused_piece_expiry / 4))
        try:        # upgrades whose message landed while the manager was down: now, not one interval later
            self._settle_upgrades()
        except Exception:
            log.exception("settling upgrades failed")
        while not stop.wait(interval):
            try:
                self.housekeep()
            except Exception:
                log.exception("housekeeping pass failed")

    def housekeep(self) -> None:
        """One housekeeping pass (each bound logs what it released)."""
        for miner, number, reason in self.sealer.release_silent():
            log.warning("released sector %s: %s (allocation and reservation freed)", sector_name(miner, number), reason)
        for miner, number, reason in self.sealer.return_held_deals():
            log.warning("aborted sector %s: %s", sector_name(miner, number), reason)
        for name, last in self.sealer.expire_workers():
            log.warning("worker %s expired: no ping for %s ([Sealing] WorkerExpiry); its name is free again",
                        name, format_duration(self.sealer._now() - last))
        self._settle_upgrades()
        for cid in self.sealer.market.expire_unused():
            log.warning("piece %s removed: no deal names it %s after its upload ([Market] UnusedPieceExpiry)",
                        cid, format_duration(self.config.unused_piece_expiry))

    def _settle_upgrades(self) -> None:
        for miner, number, state in self.snapup.settle():      # the worker is done at SubmitSnapUpProof
            log.info("upgrade of sector %s %s", sector_name(miner, number), state)

    def stop(self) -> None:
        self._stop.set()
        self.rpc.shutdown()
        deadline = time.monotonic() + STOP_TIMEOUT       # one bound for all the loops, not one each
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for t in self._threads:
            if t.is_alive():      # say where it is: a stop that hangs must be diagnosable from the log
                frame = sys._current_frames().get(t.ident)
                log.warning("the %s loop did not stop within %gs; it was at:\n%s", t.name, STOP_TIMEOUT,
                            "".join(traceback.format_stack(frame)) if frame else "(unknown)")
        self.poster.close()
        if self.ext_prover is not None:
            self.ext_prover.close()
        self.close()

    def close(self) -> None:
        """The databases and the devnet's API closed (what stop ends with; alone for a service
        opened and never started)."""
        if self.lease is not None:
            try:        # a standby takes over at its next poll, not a lease period later
                self.lease.release()
            except Exception as exc:    # noqa: BLE001 - the lease lapses by itself
                log.warning("the manager lease was not released: %s", exc)
        self.state.close()
        self.chain.close()
        if self.devnet_api is not None:
            self.devnet_api.close()
