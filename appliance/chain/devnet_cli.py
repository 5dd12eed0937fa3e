"""`damocles devnet serve`: the embedded devnet as its own process, serving the Filecoin API
(devnet_api.py) that a manager reaches through `[Common.API] Chain` like a Lotus node."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("devnet", help="the embedded devnet chain as its own process")
    g = p.add_subparsers(dest="devnet_command", metavar="CMD")
    g.required = True
    s = g.add_parser("serve", help="serve the devnet's Filecoin API (Lotus' method names) until stopped")
    s.add_argument("--home", type=Path, required=True, help="directory of devnet.db, its API state and secret")
    s.add_argument("--listen", default="127.0.0.1:1234", help="HOST:PORT to serve on (default 127.0.0.1:1234)")
    s.add_argument("--miner", action="append", default=[], metavar="ACTOR:SEALPROOF",
                   help="create this miner if the devnet lacks it (e.g. 1000:StackedDrg2KiBV1_1); repeatable")
    s.add_argument("--block-time", type=float, help="seconds per epoch (0: the clock moves only by hand)")
    s.set_defaults(func=serve)


def _miner(spec: str) -> tuple[int, int]:
    from ..core.proof_types import seal_proof
    actor, sep, proof = spec.partition(":")
    if not sep or not actor.isdigit():
        raise ValueError(f"--miner {spec!r}: expected ACTOR:SEALPROOF such as 1000:StackedDrg2KiBV1_1")
    return int(actor), seal_proof(proof).id


def serve(args) -> int:
    from .devnet_api import DevnetAPIServer
    from .policy import ChainPolicy
    from dataclasses import replace
    host, _, port = args.listen.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--listen {args.listen!r}: expected HOST:PORT")
    miners = [_miner(m) for m in args.miner]
    policy = ChainPolicy() if args.block_time is None else replace(ChainPolicy(), block_time=args.block_time)
    server = DevnetAPIServer(args.home, policy)
    try:
        existing = {m.actor for m in server.devnet.miners()}
        for actor, proof in miners:
            if actor not in existing:
                server.devnet.create_miner(actor, proof)
        server.start(host or "127.0.0.1", int(port))
        token_file = args.home / "token"
        token_file.write_text(server.token + "\n")
        token_file.chmod(0o600)
        print(f"FULLNODE_API_INFO={server.api_info()}", flush=True)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        while not stop.wait(1.0):
            pass
    finally:
        server.close()
    print("devnet stopped", file=sys.stderr)
    return 0
