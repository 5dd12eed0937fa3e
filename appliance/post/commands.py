"""`damocles post run -c post.toml`: the dedicated prover."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..core.signals import wait_for_stop_signal


def add_parsers(post: argparse._SubParsersAction) -> None:
    p = post.add_parser("run", help="run a dedicated WindowPoSt prover pulling jobs from the manager")
    p.add_argument("-c", "--config", type=Path, required=True)
    from ..core.logs import add_argument as add_log_format
    add_log_format(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from .config import load_post_config
    from .service import ProverService
    from ..core.logs import setup as setup_logs
    setup_logs(args.log_format, logging.INFO)
    service = ProverService(load_post_config(args.config))
    service.start()
    print(f"prover {service.config.name} polling {service.config.manager_url} for WindowPoSt jobs", flush=True)
    wait_for_stop_signal()
    service.stop()
    return 0
