"""Rebuild end to end on a hand-moved devnet: a worker seals a sector; its persisted sealed file
is deleted; `damocles util sectors rebuild` hands it to the worker's rebuild thread, which seals
it again from the recorded ticket, checks the CommR against the chain and persists it; the
proving check passes again and the manager's WindowPoSt for its deadline lands. A sector that
does not exist, or is not lost, is refused."""

import json

from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .conftest import run_cli, read_line
from .test_post_e2e import post_manager, prove_next_occurrence, seal_by_hand
from .configs import worker_toml
from .test_worker_e2e import start


def test_a_lost_sector_is_rebuilt_and_proven_again(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(post_manager(1))
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    worker = None
    try:
        url = read_line(manager).split()[-1]
        secret = load_or_create_secret(home / "secret")
        admin = RPCClient(url, issue_token(secret, "admin"))
        threads = [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1", "plan": "rebuild"}]
        (tmp_path / "worker.toml").write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads))
        worker = start(["worker", "run", "-c", str(tmp_path / "worker.toml"), "--parent-cache", str(tmp_path / "parents")])

        assert seal_by_hand(admin, 1, [manager, worker])[0]["State"] == "Finished"
        cli = ["--api", url, "--home", str(home)]
        p = run_cli("util", "sectors", "rebuild", "1000-99", *cli)
        assert p.returncode == 2 and "is not a sector this manager sealed" in p.stderr
        p = run_cli("util", "sectors", "rebuild", "1000-1", *cli)
        assert p.returncode == 2 and "is not lost" in p.stderr
        original = (home / "persist-1" / "sealed" / "s-t01000-1").read_bytes()
        (home / "persist-1" / "sealed" / "s-t01000-1").unlink()
        assert run_cli("util", "proving", "check", *cli).returncode == 1
        task = json.loads(run_cli("util", "sectors", "rebuild", "1000-1", "--wait", "120", *cli, "--json", check=True).stdout)
        assert task["State"] == "done" and "missing" in task["Reason"], task
        assert (home / "persist-1" / "sealed" / "s-t01000-1").read_bytes() == original
        assert run_cli("util", "proving", "check", *cli).returncode == 0
        assert admin.call("Venus.FindSector", "", {"Miner": 1000, "Number": 1})["State"] == "Finished"

        # the manager proves it in its next deadline
        d = next(x["Index"] for x in admin.call("Venus.ProvingDeadlines", 1000) if x["Sectors"])
        assert prove_next_occurrence(admin, d, [manager])["state"] == "landed"
        assert admin.call("Venus.ProvingInfo", 1000)["Power"]["active_sectors"] == 1
    finally:
        for p in (worker, manager):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
