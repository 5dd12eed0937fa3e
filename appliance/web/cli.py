"""`damocles manager login-url`: a one-time link that logs a browser in to the status page.

The manager mints the code (`Venus.WebLoginCode`, admin): the command authenticates as the
other operator commands do (--token, $DAMOCLES_TOKEN, or an admin token minted from the secret
of the manager home in --home) and prints `<manager>/ui/login?code=...`, which works once, for
120 s. No token ever appears in the link."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..core.output import emit
from ..rpc.auth import PERMISSIONS, cli_token
from ..rpc.client import RPCClient

DEFAULT_API = "http://127.0.0.1:1789"


def add_parser(manager: argparse._SubParsersAction, default_home: Path) -> None:
    p = manager.add_parser("login-url", help="print a one-time link (120 s, works once) that logs a browser in to the "
                                             "status page")
    p.add_argument("--api", help=f"the manager's URL as the browser reaches it (default $DAMOCLES_API or {DEFAULT_API})")
    p.add_argument("--token", help="an admin token (default $DAMOCLES_TOKEN or minted from --home)")
    p.add_argument("--home", type=Path, default=default_home)
    p.add_argument("--perm", choices=PERMISSIONS, default="admin",
                   help="what the page may do: admin (default: look and use the buttons) or read (look only)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_login_url)


def manager_base(api: str) -> str:
    """The manager's base URL from an --api value that may end in /rpc/v0."""
    base = api.rstrip("/")
    return base[: -len("/rpc/v0")] if base.endswith("/rpc/v0") else base


def cmd_login_url(args) -> int:
    base = manager_base(args.api or os.environ.get("DAMOCLES_API") or DEFAULT_API)
    answer = RPCClient(base, cli_token(args.token, args.home)).call("Venus.WebLoginCode", args.perm)
    url = base + answer["Path"]
    emit({"url": url, "perm": answer["Perm"], "lifetime": answer["Lifetime"]}, args.json, [url])
    if not args.json:       # stdout holds the link alone, for scripts
        print(f"(opens the status page with {answer['Perm']} permission; works once, within {answer['Lifetime']:g} s)",
              file=sys.stderr)
    return 0
