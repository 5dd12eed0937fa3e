"""`damocles manager init|run|token`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..core.signals import wait_for_stop_signal

from ..core.output import emit
from ..rpc.auth import PERMISSIONS, issue_token, load_or_create_secret

DEFAULT_HOME = Path.home() / ".damocles-manager"


def add_parsers(manager: argparse._SubParsersAction) -> None:
    p = manager.add_parser("init", help="create a manager home: devnet-profile config, secret, stores")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.set_defaults(func=cmd_init)
    p = manager.add_parser("run", help="run the manager (RPC, devnet chain, batching)")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--listen", help="HOST:PORT (default from manager.toml; port 0 picks a free one)")
    from ..core.logs import add_argument as add_log_format
    add_log_format(p)
    p.set_defaults(func=cmd_run)
    p = manager.add_parser("token", help="issue an API token")
    p.add_argument("--home", type=Path, default=DEFAULT_HOME)
    p.add_argument("--perm", choices=PERMISSIONS, default="write")
    p.add_argument("--name", default="")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_token)


def cmd_init(args) -> int:
    from .service import init_home
    path = init_home(args.home)
    print(f"initialised {args.home} (config {path.name}, secret, stores); start it with: damocles manager run --home {args.home}")
    return 0


def cmd_run(args) -> int:
    from .service import ManagerService
    from ..core.logs import setup as setup_logs
    setup_logs(args.log_format, logging.INFO)
    if not (args.home / "manager.toml").exists():
        print(f"damocles: error: {args.home / 'manager.toml'} not found: run 'damocles manager init --home {args.home}'",
              file=sys.stderr)
        return 2
    service = ManagerService(args.home)
    host, port = service.start(args.listen)
    print(f"listening on http://{host}:{port}", flush=True)
    wait_for_stop_signal()
    service.stop()
    return 0


def cmd_token(args) -> int:
    secret = load_or_create_secret(args.home / "secret")
    token = issue_token(secret, args.perm, args.name)
    emit({"token": token, "perm": args.perm}, args.json, [token])
    return 0
