"""Planned configs as TOML text, with a comment saying why above each planned table. Written by
hand (tomli-w cannot write comments); strings are quoted as JSON, which TOML's basic strings
accept."""

from __future__ import annotations

import json
import textwrap

from ..config.cpuset import format_cpuset


def q(s: str) -> str:
    return json.dumps(str(s))


def comment(text: str, width: int = 100) -> list[str]:
    return ["# " + line for line in textwrap.wrap(text, width - 2)]


def inline(d: dict) -> str:
    return "{ " + ", ".join(f"{k} = {q(v)}" for k, v in d.items()) + " }"


def header(kind: str, plan, command: str) -> list[str]:
    return [f"# {kind} planned by `damocles plan` for {plan.machine_summary}",
            f"# {command}",
            "# Why each number is what it is: `damocles plan ... --explain`; rules in docs/hardware.md.",
            "# Check it against a machine with `damocles worker check -c <this file>`.", ""]


def worker_toml(plan) -> str:
    out = header("worker.toml", plan, f"sector size {plan.size.name}")
    out += ["[worker]"]
    out += [f"name = {q(plan.name)}"] if plan.name else ["# name: this host's name (the same file serves identical machines)"]
    if plan.rpc_port is not None:
        out += [f"rpc_server = {{ port = {plan.rpc_port} }}"]
    out += ["", "[sector_manager]", f"rpc_client = {{ addr = {q(plan.manager_url)} }}"]
    out += [f"token = {q(plan.token)}"] if plan.token else ["# token: $DAMOCLES_TOKEN (a write token: damocles manager token)"]
    out += ["", "[sealing]", f"allowed_sizes = [{q(plan.size.name)}]", ""]
    for t in plan.threads:
        out += ["[[sealing_thread]]", f"location = {q(t.location)}", ""]
    for name, location in plan.attached:
        out += ["[[attached]]", f"name = {q(name)}", f"location = {q(location)}", ""]
    out += ["[processors.limitation.concurrent]"] + [f"{k} = {v}" for k, v in plan.limits.items() if v] + [""]
    if plan.ext_locks:
        out += ["[processors.ext_locks]"] + [f"{k} = {v}" for k, v in plan.ext_locks.items()] + [""]
    last_why = None
    for e in plan.entries:              # pc1 entries, then each GPU's (or node's) pc2 and c2 side by side
        if e.why != last_why:
            out += comment(e.why)
            last_why = e.why
        out += entry_lines(e) + [""]
    return "\n".join(out).rstrip() + "\n"


def entry_lines(e) -> list[str]:
    lines = [f"[[processors.{e.stage}]]"]
    if e.numa is not None:
        lines.append(f"numa_preferred = {e.numa}")
    lines.append(f"cgroup = {{ cpuset = {q(format_cpuset(e.cpus))} }}")
    lines.append(f"concurrent = {e.concurrent}")
    if e.locks:
        lines.append("locks = [" + ", ".join(q(x) for x in e.locks) + "]")
    if e.envs:
        lines.append(f"envs = {inline(e.envs)}")
    return lines


def post_toml(plan) -> str:
    out = header("post.toml", plan, f"sector size {plan.size.name}")
    out += ["[prover]"]
    out += [f"name = {q(plan.name)}"] if plan.name else ["# name: this host's name followed by -prover"]
    out += comment(plan.concurrency_why)
    out += [f"concurrency = {plan.concurrency}", ""]
    out += ["[sector_manager]", f"rpc_client = {{ addr = {q(plan.manager_url)} }}"]
    out += [f"token = {q(plan.token)}"] if plan.token else ["# token: $DAMOCLES_TOKEN (a write token: damocles manager token)"]
    out += [""]
    for name, location in plan.attached:
        out += ["[[attached]]", f"name = {q(name)}", f"location = {q(location)}", ""]
    for e in plan.entries:
        out += comment(e.why) + entry_lines(e) + [""]
    return "\n".join(out).rstrip() + "\n"
