"""`damocles bench ...`: benchmarks a storage provider runs on their own hardware. Each prints
figures as ratios against a baseline measured in the same run, never against fixed numbers."""

from __future__ import annotations

import argparse


def add_parsers(bench: argparse._SubParsersAction) -> None:
    from .pc1 import cmd_bench_pc1
    from .pc2 import cmd_bench_pc2
    from .pipeline import add_parser as add_pipeline
    from .post import cmd_bench_post
    from .rpc import cmd_bench_rpc

    p = bench.add_parser("pc1", help="SDR labelling speed against hashlib alone, parent cache time, peak memory")
    p.add_argument("--size", default="8MiB")
    p.add_argument("--repeat", type=int, default=3, help="runs of PC1 and of the floor; the best of each counts")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_pc1)

    p = bench.add_parser("pc2", help="Poseidon hashes per second of PC2 and the speed-up of N processes over one")
    p.add_argument("--size", default="8MiB")
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_pc2)

    p = bench.add_parser("post", help="one WindowPoSt job over N sectors against reading what it needs, verify time, "
                                      "share of the 30-minute deadline window")
    p.add_argument("--size", default="2KiB")
    p.add_argument("--sectors", type=int, default=2349, help="sectors in the job (2349: a 32GiB partition)")
    p.add_argument("--keep", metavar="DIR", help="lay the sectors out in DIR (new or empty) and keep them")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_post)

    p = bench.add_parser("rpc", help="manager RPC requests/s and latency against a bare HTTP server")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_bench_rpc)

    add_pipeline(bench)
    from .chain import add_parser as add_chain
    add_chain(bench)
    from .ui import add_parser as add_ui
    add_ui(bench)
    from .manager import add_parser as add_manager
    add_manager(bench)
