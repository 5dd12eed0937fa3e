"""`damocles manager init|run|token|backup|restore` (and `login-url`, web/cli.py)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

from ..core.signals import wait_for_stop_signal

from ..core.db import DatabaseError
from ..core.output import emit
from ..rpc.auth import PERMISSIONS, TOKEN_CACHE_SECONDS, issue_token, jwt_expiry, load_or_create_secret, rotate_secret

DEFAULT_HOME = Path.home() / ".damocles-manager"


def add_parsers(manager: argparse._SubParsersAction) -> None:
    p = manager.add_parser("init", help="create a manager home: sector-manager.cfg (devnet profile), secret, stores")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--upgrade", action="store_true",
                   help="write the home's manager.toml (earlier versions) as sector-manager.cfg, MinNumber carried "
                        "over to Damocles' meaning, and move manager.toml aside as manager.toml.bak")
    p.set_defaults(func=cmd_init)
    p = manager.add_parser("run", help="run the manager (RPC, devnet chain, batching)")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--listen", help="HOST:PORT (default [RPC] Listen of sector-manager.cfg; port 0 picks a free one)")
    from ..core.logs import add_argument as add_log_format
    add_log_format(p)
    p.add_argument("--rebuild-from-chain", action="store_true",
                   help="when manager.db is behind the chain (deleted, damaged, an older copy restored), take the "
                        "sector number counters and message nonces from the chain instead of refusing to start")
    p.add_argument("--ext-prover", action="store_true",
                   help="hand WindowPoSt and WinningPoSt to the external processors of ext-prover.cfg in the home "
                        "([[WdPost]], [[WinPost]]; `manager init` writes it commented out)")
    p.set_defaults(func=cmd_run)
    p = manager.add_parser("backup", help="write a consistent online backup (state, chain, secret, config) to one file")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--to", type=Path, required=True, metavar="FILE", help="the archive to write (.tar.gz)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)
    p = manager.add_parser("restore", help="check a backup and put it into a manager home (the manager stopped)")
    p.add_argument("--from", dest="archive", type=Path, required=True, metavar="FILE")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--keep-chain", action="store_true",
                   help="restore the manager's state and secret but keep the home's devnet.db")
    p.add_argument("--force", action="store_true",
                   help="replace the home's databases (they are moved aside as *.before-restore-<time>)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_restore)
    p = manager.add_parser("token", help="issue an API token (--rotate: replace the secret first, refusing every old token)")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--perm", choices=PERMISSIONS, default="write")
    p.add_argument("--name", default="")
    p.add_argument("--ttl", type=_seconds, default=None, metavar="SECONDS",
                   help="the token expires this many seconds from now (default: no expiry)")
    p.add_argument("--rotate", action="store_true",
                   help="replace the manager's secret: every token issued before is refused at once by a running "
                        f"manager and within {int(TOKEN_CACHE_SECONDS)} s by its workers; then issue the new token")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_token)
    from ..web.cli import add_parser as add_login_url
    add_login_url(manager, DEFAULT_HOME)


def cmd_init(args) -> int:
    if args.upgrade:
        from .config_file import upgrade_legacy
        new, backup = upgrade_legacy(args.home)
        print(f"upgraded {args.home}: wrote {new.name}, the old config is {backup.name}")
        return 0
    from .service import init_home
    path = init_home(args.home)
    print(f"initialised {args.home} (config {path.name}, secret, stores); start it with: damocles manager run --home {args.home}")
    return 0


EXIT_LEASE_LOST = 3     # the lease was lost: systemd restarts the manager, which stands by


def cmd_run(args) -> int:
    from .config import config_path, load_config
    from .service import ManagerService
    from .standby import StandbyServer, advertised_addr, open_lease, wait_for_lease
    from ..core.logs import setup as setup_logs
    from ..core.signals import stop_on_signal
    setup_logs(args.log_format, logging.INFO)
    path = config_path(args.home)
    if not path.exists():
        print(f"damocles: error: {path} not found: run 'damocles manager init --home {args.home}'", file=sys.stderr)
        return 2
    from ..config import ConfigError
    from ..core.extproc import ProcessorError
    from .ext_prover import ExtProverConfigError
    from .home_lock import HomeLock
    stop = stop_on_signal()
    try:
        config = load_config(path)
        listen = args.listen or config.listen
        home_lock = HomeLock(args.home)     # one manager per home, active or standing by
    except (DatabaseError, ConfigError) as exc:
        print(f"damocles: error: {exc}", file=sys.stderr)
        return 2
    try:
        lease_state, lease = open_lease(args.home, config, listen)
    except DatabaseError as exc:
        home_lock.release()
        print(f"damocles: error: {exc}", file=sys.stderr)
        return 2
    try:
        holder = lease.try_take()
        if holder is not None:                  # another manager is active on this database: stand by
            standby = StandbyServer(args.home, config)
            standby.active = holder.addr
            try:
                host, port = standby.serve(listen)
            except OSError as exc:
                print(f"damocles: error: standby cannot listen on {listen}: {exc}", file=sys.stderr)
                return 2
            print(f"standing by on http://{host}:{port}", flush=True)
            listen = f"{host}:{port}"           # active, it serves where it stood by (port 0 picked one)
            lease.addr = advertised_addr(listen)
            try:
                if not wait_for_lease(lease, standby, stop):
                    return 0
            finally:
                standby.shutdown()
        lease.on_lost = _exit_lease_lost
        threading.Thread(target=lease.keep, args=(stop,), name="lease", daemon=True).start()
        try:
            service = ManagerService(args.home, config, rebuild_from_chain=args.rebuild_from_chain,
                                     ext_prover=args.ext_prover, lease=lease, home_lock=home_lock, state=lease_state)
        except (DatabaseError, ExtProverConfigError, ProcessorError) as exc:   # a bad database, ext-prover.cfg or processor
            print(f"damocles: error: {exc}", file=sys.stderr)
            stop.set()
            return 2
        host, port = service.start(listen)
        lease.addr = advertised_addr(f"{host}:{port}")      # the port bound (0 picks one)
        lease.renew()           # the address written now: a standby names it to callers
        print(f"listening on http://{host}:{port}", flush=True)
        wait_for_stop_signal(stop)
        service.stop()          # the lease released last: a standby takes over at its next poll
        return 0
    finally:
        lease_state.close()     # closed already by the service, unless it never opened
        home_lock.release()


def _exit_lease_lost(reason: str) -> None:
    """The lease was lost (not renewed in time, or taken): exit now, from whatever thread found
    it; writes are fenced meanwhile, and a transaction open now is never committed."""
    logging.getLogger("damocles.manager").critical(
        "exiting: the manager lease was lost (%s); another manager may be active. Restarted, this "
        "manager stands by until the lease is free", reason)
    for h in logging.getLogger().handlers:
        h.flush()
    sys.stderr.flush()
    os._exit(EXIT_LEASE_LOST)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ttl: {text!r} is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"--ttl: must be positive seconds, got {text}")
    return value


def cmd_token(args) -> int:
    secret_file = args.home / "secret"
    if args.rotate:
        if not secret_file.exists():
            print(f"damocles: error: --rotate: {secret_file} not found (is {args.home} a manager home?)", file=sys.stderr)
            return 2
        rotate_secret(secret_file)
    secret = load_or_create_secret(secret_file)
    token = issue_token(secret, args.perm, args.name, ttl=args.ttl)
    out = {"token": token, "perm": args.perm, "rotated": args.rotate}
    if args.ttl is not None:
        out["expires"] = jwt_expiry(token)
    emit(out, args.json, [token])
    return 0


def cmd_backup(args) -> int:
    from .backup import backup
    manifest = backup(args.home, args.to)
    sizes = ", ".join(f"{n} v{m['schema_version']}" if "schema_version" in m else n for n, m in manifest["files"].items())
    emit({"archive": str(args.to), **manifest}, args.json, [f"backed up {args.home} to {args.to} ({sizes})"])
    return 0


def cmd_restore(args) -> int:
    from .backup import restore
    done = restore(args.archive, args.home, keep_chain=args.keep_chain, force=args.force)
    lines = [f"restored {', '.join(done['restored'])} from {args.archive} into {args.home}"]
    if done["moved_aside"]:
        lines.append(f"moved aside: {', '.join(done['moved_aside'])}")
    emit(done, args.json, lines)
    return 0
