"""`damocles hwinfo`, `damocles plan` and the body of `damocles worker check`. All three take
`--root DIR` (a captured machine: a directory in the capture layout
`hwcap/root/{sys,proc}` with tool output beside `root/`, or its .tgz) and `--json`. `plan` asks nothing: install scripts call it with `--out FILE --force`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ..core.output import emit

ROOT_HELP = "read a captured machine instead of this one (a directory with sys/ and proc/, hwcap/root/, or its .tgz)"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hwinfo", help="the machine as a tree: packages, NUMA nodes, L3 groups, GPUs, disks")
    p.add_argument("--root", help=ROOT_HELP)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_hwinfo)
    p = sub.add_parser("plan", help="write a worker.toml (or post.toml) planned for this machine",
                       description="Plan a complete worker config (or, with --role post, a prover config) for this "
                                   "machine. Non-interactive: give --out FILE (--force to replace it) in scripts.")
    p.add_argument("--role", choices=("worker", "post"), default="worker")
    p.add_argument("--size", default="32GiB", help="sector size (default 32GiB)")
    p.add_argument("--sealing-dir", action="append", default=[], metavar="DIR",
                   help="a directory for sealing locations (repeat for each disk); worker only")
    p.add_argument("--persist-dir", action="append", default=[], metavar="DIR", help="a persist store (repeatable)")
    p.add_argument("--persist-name", action="append", default=[], metavar="NAME",
                   help="the manager's name for each --persist-dir, in order (default: its sectorstore.json Name, "
                        "else the directory's name)")
    p.add_argument("--manager", default="http://127.0.0.1:1789", help="the manager's URL or multiaddr")
    p.add_argument("--token", help="write a manager token into the config (default: the worker reads $DAMOCLES_TOKEN)")
    p.add_argument("--name", help="the worker's (prover's) name (default: the host's name at run time)")
    p.add_argument("--rpc-port", type=int, help="the worker's RPC port (default 17890; 0: any free port)")
    p.add_argument("--out", type=Path, help="write the config here (default: standard output)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--explain", action="store_true", help="say why each number is what it is")
    p.add_argument("--root", help=ROOT_HELP)
    p.add_argument("--json", action="store_true", help="print the config, the explanation and the check as JSON")
    p.set_defaults(func=cmd_plan)


def add_check_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, required=True, help="a worker.toml (or post.toml)")
    p.add_argument("--root", help=ROOT_HELP)
    p.add_argument("--json", action="store_true")


def cmd_hwinfo(args) -> int:
    from .machine import discover
    m = discover(args.root, identity=True)
    emit(m.to_dict(), args.json, m.tree())
    return 0


def cmd_plan(args) -> int:
    from ..core.proof_types import sector_size
    from ..config.validate import manager_url
    from .check import check_file
    from .machine import discover
    from .plan import persist_store, plan_worker
    from .plan_post import plan_post
    from .sources import Root
    size = sector_size(args.size)
    url = manager_url(args.manager, "--manager")
    root = Root(args.root)
    if len(args.persist_name) > len(args.persist_dir):
        raise ValueError("more --persist-name than --persist-dir")
    if args.role == "post" and (args.sealing_dir or args.rpc_port is not None):
        raise ValueError("--sealing-dir and --rpc-port are for --role worker: a prover only reads the persist stores")
    if args.rpc_port is not None and not 0 <= args.rpc_port <= 65535:
        raise ValueError(f"--rpc-port {args.rpc_port} is not a TCP port")
    if args.role == "worker":
        if len(args.persist_dir) != 1:
            raise ValueError("give one --persist-dir for a worker (the store its sealed sectors go to)")
        if not args.sealing_dir:
            raise ValueError("give at least one --sealing-dir (a directory on each disk sealing may use)")
    names = args.persist_name + [None] * (len(args.persist_dir) - len(args.persist_name))
    persist = []
    for d, name in zip(args.persist_dir, names):
        path = os.path.abspath(os.path.expanduser(d))
        if root.live and not os.path.isdir(path):
            raise ValueError(f"--persist-dir {path} is not a directory (create it: damocles store file-init -l {path})")
        persist.append(persist_store(path, name))
    sealing = [os.path.abspath(os.path.expanduser(d)) for d in args.sealing_dir]
    for path in sealing:
        if root.live and not os.path.isdir(path):
            raise ValueError(f"--sealing-dir {path} is not a directory (mount the disk and create it)")
    m = discover(root)
    if args.role == "post":
        plan = plan_post(m, size, persist, url, args.name, args.token)
    else:
        plan = plan_worker(m, size, [m.space_for(p) for p in sealing], persist[0], url, args.name, args.token)
        plan.rpc_port = args.rpc_port
    text = plan.toml()
    with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
        f.write(text)
    try:
        report = check_file(f.name, m)
    finally:
        os.unlink(f.name)
    if report.errors:       # a planner bug: never hand out a config that does not pass
        raise ValueError("the planned config does not pass the check:\n" + "\n".join(f"  {x}" for x in report.errors))
    if args.out:
        if args.out.exists() and not args.force:
            raise ValueError(f"{args.out} exists: use --force to replace it")
        from ..core.files import atomic_write
        atomic_write(args.out, text, mode=0o600)      # it may hold a token
    if args.json:
        emit({"role": args.role, "size": size.name, "out": str(args.out) if args.out else None, "config": text,
              "explain": plan.explain, "check": report.to_dict()}, True)
        return 0
    if not args.out:
        sys.stdout.write(text)
    info = sys.stdout if args.out else sys.stderr
    if args.explain:
        for line in plan.explain:
            print(f"- {line}", file=info)
    for w in report.warnings:
        print(w, file=sys.stderr)
    if args.out:
        print(f"wrote {args.out} ({args.role}, {size.name}); check it any time with: damocles worker check -c {args.out}",
              file=info)
    return 0


def cmd_worker_check(args) -> int:
    from .check import check_file
    from .machine import discover
    m = discover(args.root)
    report = check_file(args.config, m)
    if args.json:
        out = report.to_dict()
        out["config"], out["machine"] = str(args.config), m.root.label
        print(json.dumps(out, indent=2))
    else:
        for f in report.findings:
            print(f)
        for n in report.notes:
            print(f"note: {n}")
        print(f"{args.config} ({report.kind}): {len(report.errors)} error(s), {len(report.warnings)} warning(s), "
              f"checked against {m.root.label}")
    return 1 if report.errors else 0
