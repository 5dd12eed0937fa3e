"""A processor that misbehaves once, recorded in the FAKE_MARKER file, then serves the stage for
real with the builtin engine. FAKE_MODE:
- exit: exits on its first task; hang: reads its first task and never answers it;
- garbage: prints a line that is not JSON; wrongid: answers its first task with an id never sent;
- badoutput: answers its first task with an output that is a string, then serves every task (the
  same process: the worker must not restart it);
- wrongready: prints something else than the ready line;
- none: behaves.
FAKE_READY_DELAY (seconds, every start): a slow start, before the ready line.
FAKE_SERVE=echo: serve by answering `{"echo": task, "pid": pid}` instead of the builtin engine (the
protocol alone, no sector needed). FAKE_SERVE=snark (c2): the builtin engine's answer with its
proof replaced by 192 bytes, in the same encoding: what a rust-fil-proofs c2 returns for a 2KiB
sector (one Groth16 partition), which nothing here can verify."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

stage, mode, marker = sys.argv[1], os.environ["FAKE_MODE"], os.environ["FAKE_MARKER"]
delay = float(os.environ.get("FAKE_READY_DELAY") or 0)
if delay:
    time.sleep(delay)      # the slow start being simulated; stable_wait decides whether it is waited for


echo = os.environ.get("FAKE_SERVE") == "echo"
snark = os.environ.get("FAKE_SERVE") == "snark"


def fake_snark(task, output: dict) -> dict:
    """`output` with its proof replaced by 192 bytes derived from the task, encoded as the builtin
    c2 encodes its proof (base64 text, or an array of bytes)."""
    import base64
    import hashlib
    seed = json.dumps(task, sort_keys=True).encode()
    proof = b"".join(hashlib.sha256(seed + bytes([i])).digest() for i in range(6))
    assert len(proof) == 192
    encoded = base64.b64encode(proof).decode() if isinstance(output["proof"], str) else list(proof)
    return {**output, "proof": encoded}


def serve_without_ready() -> None:
    from appliance.worker.tasks import run_task
    for line in sys.stdin:
        req = json.loads(line)
        output = {"echo": req["task"], "pid": os.getpid()} if echo else run_task(stage, req["task"])
        if snark:
            output = fake_snark(req["task"], output)
        print(json.dumps({"id": req["id"], "err_msg": None, "output": output}), flush=True)


if mode != "none" and not os.path.exists(marker):
    open(marker, "w").close()
    if mode == "wrongready":
        print(f"{stage} processor starting", flush=True)
        sys.exit(0)
    print(f"{stage} processor ready", flush=True)
    line = sys.stdin.readline()
    rid = json.loads(line)["id"]
    if mode == "exit":
        sys.exit(3)
    if mode == "hang":
        time.sleep(3600)
    if mode == "garbage":
        print("this is not JSON", flush=True)
        time.sleep(3600)
    if mode == "wrongid":
        print(json.dumps({"id": rid + 1000, "err_msg": None, "output": {}}), flush=True)
        time.sleep(3600)
    if mode == "badoutput":
        print(json.dumps({"id": rid, "err_msg": None, "output": "not an object"}), flush=True)
        serve_without_ready()
        sys.exit(0)
if echo or snark:
    print(f"{stage} processor ready", flush=True)
    serve_without_ready()
    sys.exit(0)
from appliance.worker.external import serve  # noqa: E402

sys.exit(serve(stage))
