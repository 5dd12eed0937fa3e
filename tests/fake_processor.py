"""A processor that misbehaves once (FAKE_MODE = exit | hang | garbage), recorded in the
FAKE_MARKER file, then serves the stage for real with the builtin engine."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

stage, mode, marker = sys.argv[1], os.environ["FAKE_MODE"], os.environ["FAKE_MARKER"]
if not os.path.exists(marker):
    open(marker, "w").close()
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
from appliance.worker.external import serve  # noqa: E402

sys.exit(serve(stage))
