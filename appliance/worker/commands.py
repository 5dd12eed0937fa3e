"""`damocles worker run -c worker.toml`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path


def add_parsers(worker: argparse._SubParsersAction) -> None:
    p = worker.add_parser("run", help="run a worker: sealing threads pulling work from the manager")
    p.add_argument("-c", "--config", type=Path, required=True)
    p.add_argument("--parent-cache", type=Path, help="SDR parent cache directory (default as rust-fil-proofs)")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from .config import load_worker_config
    from .service import WorkerService
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)
    service = WorkerService(load_worker_config(args.config), args.parent_cache)
    service.start()
    print(f"worker {service.config.name} running {len(service.threads)} sealing threads", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    service.stop()
    return 0
