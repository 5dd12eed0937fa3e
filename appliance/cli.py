"""The one entry point: `damocles <role or tool> ...`. Only argument wiring lives here; each
sub-command tree is defined by the package that implements it."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import sys

from . import __version__
from .proofs import ProofError
from .rpc import RPCError


def version_info() -> dict:
    from .buildinfo import build_info
    from .proofs.poseidon import ARITHMETIC
    return {"version": __version__, "frozen": bool(getattr(sys, "frozen", False)), **build_info(),
            "python": platform.python_version(), "executable": sys.executable, "platform": platform.platform(),
            "field_arithmetic": ARITHMETIC, "postgres_driver": _postgres_driver()}


def _postgres_driver() -> str | None:
    """psycopg and the libpq it uses, for [Common.DB] Driver = "postgres"; None where absent."""
    try:
        import psycopg
        return f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}, libpq {psycopg.pq.version_pretty(psycopg.pq.version())})"
    except Exception:      # noqa: BLE001 - missing, or its libpq does not load: the driver is unavailable
        return None


def build_parser() -> argparse.ArgumentParser:
    from .bench import add_parsers as add_bench
    from .chain.devnet_cli import add_parser as add_devnet
    from .hw.commands import add_parsers as add_hw
    from .manager.cli_market import add_parsers as add_market
    from .manager.cli_market import add_snap_parsers as add_snap
    from .manager.cli_proving import add_parsers as add_proving
    from .manager.cli_util import add_parsers as add_manager_util
    from .manager.commands import add_parsers as add_manager
    from .post.commands import add_parsers as add_post
    from .proofs.commands import add_parsers as add_util
    from .up import add_parser as add_up
    from .manager.cli_damocles import add_rest as add_damocles_rest
    from .manager.cli_damocles import add_sealer as add_damocles_sealer
    from .manager.cli_damocles import add_worker as add_damocles_worker
    from .manager.cli_damocles import not_built
    from .worker.commands import add_store_parsers as add_store
    from .worker.commands import add_parsers as add_worker
    from .worker.commands import add_host_argument as add_worker_host
    from .worker.commands import add_processor_parser

    parser = argparse.ArgumentParser(prog="damocles", description="A Filecoin sealing cluster in one executable.")
    parser.add_argument("--version", action="store_true", help="print the version (with --json: and whether frozen)")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def group(name: str, helptext: str, metavar: str = "CMD", **kw):
        p = sub.add_parser(name, help=helptext, **kw)
        g = p.add_subparsers(dest=f"{name}_command", metavar=metavar)
        g.required = True
        return p, g

    # `daemon init|run` are damocles-manager's names for `manager init|run`
    add_manager(group("manager", "the manager role (also: daemon)", aliases=["daemon"])[1])
    not_built(sub, "mock", "run a mock manager", "run `damocles up` for a manager with its devnet chain, a worker and a prover")
    add_up(sub)
    add_devnet(sub)
    add_store(group("store", "prepare sealing locations and persist stores")[1])
    add_processor_parser(sub)
    worker_parser, worker = group("worker", "the worker role")
    add_worker_host(worker_parser)
    add_worker(worker)
    add_post(group("post", "the dedicated PoSt prover role")[1])
    util_parser, util = group("util", "operator commands (Damocles' names) and the proof engine by hand", "TOOL")
    util_parser.add_argument("--listen", help="the manager's address HOST:PORT, as damocles-manager's `util --listen` (or --api URL)")
    add_util(util)
    add_manager_util(util)
    add_damocles_sealer(util)
    add_damocles_worker(util)
    add_damocles_rest(util)
    add_proving(util)
    add_market(util)
    add_snap(util)
    add_bench(group("bench", "benchmarks to run on your own hardware", "BENCH")[1])
    add_hw(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()   # the frozen executable re-enters here in spawned children
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_any", False):      # only a not-built command takes anything
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    if args.version:
        info = version_info()
        built = ", ".join(x for x in ("frozen" if info["frozen"] else "", info["commit"] and f"commit {info['commit']}",
                                      info["build_time"] and f"built {info['build_time']}") if x)
        print(json.dumps(info, indent=2) if args.json else f"damocles {info['version']}{f' ({built})' if built else ''}")
        return 0
    if not args.command:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except (ProofError, ValueError, OSError, RPCError) as exc:
        print(f"damocles: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
