"""Damocles' command tree under its own names (issue 15, item 6).

DAMOCLES_TREE is written out from damocles-manager's command definitions at commit
4235a89557219de436bba441e727af3a42f903f0: cmd/damocles-manager/main.go (mock, daemon, util),
daemon.go (init, run) and internal/util.go, util_chain.go, util_miner.go, util_sealer.go,
util_sealer_sectors.go, util_sealer_proving.go, util_sealer_actor.go, util_sealer_snap.go,
util_market.go, util_storage.go, util_worker.go, util_message.go, util_params.go,
util_kvstore_migrate.go: every command that has an Action (72). The store commands are from
damocles-worker/src/bin/damocles-worker/store.rs (clap: `-l/--loc`, num_args = 1..).

Actionable commands run in this process against a live manager on loopback (its real RPC, a
worker's real RPC for info/pause/resume); the text printed carries the fields the Go CLI prints,
`--json` parses. The not-built ones exit 2 with one line naming the command and why."""

import base64
import json
import os
from types import SimpleNamespace

import pytest

from appliance import cli
from appliance.manager.service import ManagerService, init_home
from appliance.rpc import UNAUTHORIZED, RPCError
from appliance.rpc.auth import issue_token
from appliance.rpc.client import RPCClient
from appliance.worker.rpc import build_server

from .configs import manager_toml
from .pg_cluster import own_database

pytestmark = pytest.mark.timeout(180)

# path -> file it is defined in (damocles-manager/cmd/damocles-manager/...)
DAMOCLES_TREE = {
    "mock": "mock.go", "daemon init": "daemon.go", "daemon run": "daemon.go",
    "util chain head": "internal/util_chain.go", "util chain pci": "internal/util_chain.go",
    "util miner info": "internal/util_miner.go", "util miner create": "internal/util_miner.go",
    **{f"util sealer sectors {c}": "internal/util_sealer_sectors.go" for c in (
        "abort", "list", "restore", "check-expire", "expired", "extend", "terminate", "terminate query", "remove",
        "finalize", "state", "state export-json", "state import-json", "find-deal", "resend-pre", "resend-prove", "import",
        "rebuild", "export-to-lotus metadata", "export-to-lotus files", "unseal")},
    **{f"util sealer proving {c}": "internal/util_sealer_proving.go" for c in (
        "info", "faults", "deadlines", "deadline", "check", "simulate-wdpost", "sector-info", "winning-vanilla",
        "compact-partitions", "recover-faults")},
    **{f"util sealer actor {c}": "internal/util_sealer_actor.go" for c in (
        "balance", "add-balance", "withdraw", "repay-debt", "control list", "control set", "set-owner",
        "propose-change-worker", "confirm-change-worker", "compact-allocated", "propose-change-beneficiary",
        "confirm-change-beneficiary")},
    **{f"util sealer snap {c}": "internal/util_sealer_snap.go" for c in ("fetch", "candidates", "cancel-commit")},
    "util market release-deals": "internal/util_market.go",
    **{f"util storage {c}": "internal/util_storage.go" for c in (
        "gen-sectorstore-json", "attach", "find", "list", "release-reserved")},
    **{f"util worker {c}": "internal/util_worker.go" for c in (
        "list", "remove", "info", "pause", "resume", "wdpost list", "wdpost reset", "wdpost remove", "wdpost remove-all")},
    "util message wait": "internal/util_message.go", "util message search": "internal/util_message.go",
    "util fetch-params": "internal/util_params.go", "util migrate": "internal/util_kvstore_migrate.go",
}

# the ones that answer "not built yet" (exit 2), with a word of the reason they give
NOT_BUILT = {
    "mock": "damocles up", "util chain pci": "chain", "util miner create": "chain",
    "util sealer proving winning-vanilla": "chain",
    "util sealer proving compact-partitions": "chain", "util sealer proving recover-faults": "chain",
    **{f"util sealer actor {c}": "chain" for c in (
        "repay-debt", "control list", "control set", "set-owner",
        "propose-change-worker", "confirm-change-worker", "compact-allocated", "propose-change-beneficiary",
        "confirm-change-beneficiary")},
    "util market release-deals": "chain",
    "util migrate": "SQLite",
}


def _choices(parser):
    actions = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return actions[0].choices if actions else {}


def _resolve(path: str):
    """The parser a command path reaches, and the words left over (a not-built command's own
    sub-command, or `state`'s export-json/import-json words)."""
    parser, words = cli.build_parser(), path.split()
    while words and words[0] in _choices(parser):
        parser, words = _choices(parser)[words[0]], words[1:]
    return parser, words


def test_tree_has_every_damocles_command():
    assert len(DAMOCLES_TREE) == 72
    present, actionable = [], []
    for path in DAMOCLES_TREE:
        parser, rest = _resolve(path)
        defaults = parser._defaults
        assert "func" in defaults, f"{path}: not a command here"
        if rest:    # reached through its parent: a not-built parent naming it, or `state WORDS`
            assert rest[0] in defaults.get("not_built_children", ()) or (path.startswith("util sealer sectors state ")) or (
                path == "util sealer sectors terminate query"), path       # `terminate [query] ...`: one parser
        present.append(path)
        if "not_built" not in defaults:
            actionable.append(path)
    assert set(actionable) == set(DAMOCLES_TREE) - set(NOT_BUILT)
    assert (len(present), len(actionable), len(NOT_BUILT)) == (72, 55, 17)


def test_store_sealing_init_takes_several_locations_after_one_l(tmp_path, capsys):
    locs = [tmp_path / n for n in ("a", "b", "c")]
    assert cli.main(["store", "sealing-init", "-l", *map(str, locs), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["location"] for r in out["locations"]] == [str(p) for p in locs]
    assert all((p / "meta").is_dir() and (p / "data").is_dir() for p in locs)
    # `--loc` and a repeated `-l`, as clap allows
    assert cli.main(["store", "sealing-init", "--loc", str(tmp_path / "d"), "-l", str(tmp_path / "e")]) == 0
    assert (tmp_path / "d" / "meta").is_dir() and (tmp_path / "e" / "meta").is_dir()
    capsys.readouterr()
    assert cli.main(["store", "file-init", "-l", str(tmp_path / "p1"), str(tmp_path / "p2"), "--json"]) == 0
    stores = json.loads(capsys.readouterr().out)["stores"]
    assert [s["Name"] for s in stores] == ["p1", "p2"] and (tmp_path / "p2" / "sectorstore.json").is_file()
    assert cli.main(["store", "file-init", "-l", str(tmp_path / "p3"), str(tmp_path / "p4"), "--name", "x"]) == 2
    assert "--name names one store" in capsys.readouterr().err
    assert cli.main(["store", "hugepage-file-init", "-n", "0", "-s", "1GiB", "-c", "4", "--path", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("damocles: store hugepage-file-init is not built yet: ")


@pytest.mark.parametrize("path", sorted(NOT_BUILT))
def test_not_built_commands_exit_2_with_their_reason(path, capsys):
    # Damocles' own flags are taken, so that the answer is this line, not a usage error
    extra = ["--override", "state.json"] if path.endswith("import-json") else ["--miner", "1000", "7"]
    assert cli.main([*path.split(), "--really-do-it", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"damocles: {path} is not built yet: "), err
    assert NOT_BUILT[path] in err[0], err


def test_not_built_are_in_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["util", "sealer", "actor", "--help"])
    text = capsys.readouterr().out
    assert "balance" in text and "[not built yet]" in text


# --- against a live manager ----------------------------------------------------------------

@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    """A manager (devnet, clock by hand, PoSt off, deals on) with one sector reported by worker `w1`,
    whose RPC (the real one, around a recording thread) the manager can reach."""
    tmp = tmp_path_factory.mktemp("farm")
    home = tmp / "m"
    # a module's manager: a database of its own (DAMOCLES_TEST_DB=postgres), not the first test's
    init_home(home, own_database(manager_toml(None, block_time="0s", miner={"SealProof": "StackedDrg2KiBV1_1",
                                                                          "PoSt": {"Enabled": False},
                                                                          "Sector": {"EnableDeals": True}},
                                              config={"Common": {"PieceStores": [{"Name": "pieces-1", "Path": "pieces"}]}})))
    svc = ManagerService(home)
    host, port = svc.start("127.0.0.1:0")
    url = f"http://{host}:{port}"
    rpc = RPCClient(url, issue_token(svc.secret, "write", "w1"))
    sid = rpc.call("Venus.AllocateSector", {})["ID"]
    rpc.call("Venus.ReportState", sid, {"Worker": {"Instance": "w1", "Location": "/w/t0"},
                                        "StateChange": {"Prev": "Empty", "Next": "PC1Done", "Event": "PC1"}})
    thread = RecordingThread(f"s-t0{sid['Miner']}-{sid['Number']}")
    server = build_server(SimpleNamespace(rpc=rpc, threads=[thread], config=SimpleNamespace(name="w1")))
    whost, wport = server.serve("127.0.0.1", 0)
    rpc.call("Venus.WorkerPing", {"Name": "w1", "Dest": f"{whost}:{wport}", "Version": "v-test",
                                  "Summary": {"Threads": 1, "Empty": 0, "Paused": 0, "Running": 1, "Waiting": 0, "Errors": 0}})
    yield SimpleNamespace(svc=svc, url=url, home=home, sid=sid, thread=thread, worker_dest=f"{whost}:{wport}",
                          admin=RPCClient(url, issue_token(svc.secret, "admin", "t")))
    server.shutdown()
    svc.stop()


class RecordingThread:
    def __init__(self, job_id):
        self.job_id, self.calls, self.plan = job_id, [], "sealer"
        self.table = SimpleNamespace(states=("PC1Done", "PC2Done"))

    def pause(self):
        self.calls.append(("pause",))
        return True

    def resume(self, set_to):
        self.calls.append(("resume", set_to))
        return True

    def summary(self):
        return {"index": 0, "location": "/w/t0", "plan": self.plan, "job_id": self.job_id, "job_state": "PC1Done",
                "thread_state": {"state": "Running"}, "last_error": None}


def run(farm, capsys, *args, json_out=False):
    rc = cli.main(["util", "--listen", farm.url.removeprefix("http://"), *args, "--home", str(farm.home),
                   *(["--json"] if json_out else [])])
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if json_out and rc == 0 else out.out), out.err


def test_sectors_list_state_export(farm, capsys):
    name = f"s-t0{farm.sid['Miner']}-{farm.sid['Number']}"
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "list")
    assert rc == 0 and out.startswith("Sectors:\n") and f"{name}:" in out and "\tWorker: w1 @ /w/t0" in out
    assert "\tState: Empty => PC1Done @PC1" in out and "\tFinalized: false, Removed: false" in out and out.rstrip().endswith("Count: 1")
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "list", "--offline")
    assert rc == 0 and "Count: 0" in out
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "list", "--sealing=false")
    assert rc == 0 and "Count: 0" in out
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "list", "--miner", "f01000", json_out=True)
    assert rc == 0 and out["Count"] == 1 and out["sectors"][0]["ID"] == farm.sid
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "state", "1000", str(farm.sid["Number"]))
    # showSectorState's lines (internal/util_sealer_sectors.go), in order
    expected = [f"Sector {name}: ", "", "Common:", "\tFinalized: false", "\tRemoved: false", "\tAborting: ", "\t\tNULL", "",
                "LatestState:", "\tState Change: Empty => PC1Done, by PC1", "\tWorker: w1(/w/t0)", "\tFailure: NULL", "",
                "Deals:", "\tNULL", "", "Sealing:", "\tTicket: NULL", "\tPreCommit Info:", "\t\tNULL", "\tPreCommit Message: NULL",
                "\tSeed: NULL", "\tProveCommit Info:", "\t\tNULL", "\tProveCommit Message: NULL", "\tMessage NeedSend: false", "",
                "SnapUp:", "\tUpgraded: false", "", "Termination:", "\tTerminate Message: NULL", "", "Rebuild: false", ""]
    assert out.split("\n")[:-1] == expected, out
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "state", "export-json", "t01000", str(farm.sid["Number"]))
    assert rc == 0 and json.loads(out)["ID"] == farm.sid and ", " not in out      # Go's json.Marshal: compact
    assert json.loads(out) == farm.admin.call("Venus.FindSectorInAllStates", farm.sid)
    rc, _, err = run(farm, capsys, "sealer", "sectors", "state", "1000", "x")
    assert rc == 2 and "sector number: 'x' is not a number" in err
    rc, _, err = run(farm, capsys, "sealer", "sectors", "state", "f0x", "1")
    assert rc == 2 and "'f0x' is not a miner actor id" in err
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "find-deal", "77")
    assert rc == 0 and out.strip() == "Not Found"


def test_abort_and_restore(farm, capsys, tmp_path):
    rpc = RPCClient(farm.url, issue_token(farm.svc.secret, "write", "w1"))
    sid = rpc.call("Venus.AllocateSector", {})["ID"]
    n = str(sid["Number"])
    ticket = rpc.call("Venus.AssignTicket", sid)
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "state", "1000", n)
    assert f"\tTicket: ({ticket['Epoch']}) {base64.b64decode(ticket['Ticket']).hex()}" in out.splitlines(), out
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "abort", "1000", n)
    assert rc == 0 and "--really-do-it" in out and not farm.admin.call("Venus.FindSectorInAllStates", sid)["AbortReason"]
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "abort", "1000", n, "--really-do-it", json_out=True)
    assert rc == 0 and farm.admin.call("Venus.FindSectorInAllStates", sid)["AbortReason"] == "aborted via CLI"
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "list", "--offline")
    assert f"s-t01000-{n}:" in out and "Count: 1" in out
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "restore", "1000", n)
    assert rc == 0 and farm.admin.call("Venus.FindSectorInAllStates", sid)["AbortReason"] == ""


def test_workers(farm, capsys):
    rc, out, _ = run(farm, capsys, "worker", "list")
    header, row = out.splitlines()[:2]
    assert header.split()[:9] == ["Name", "Dest", "Version", "Threads", "Empty", "Paused", "Running", "Waiting", "Errors"]
    assert row.split()[0] == "w1" and row.split()[2:9] == ["v-test", "1", "0", "0", "1", "0", "0"] and "(!)" not in row
    rc, out, _ = run(farm, capsys, "worker", "list", "--expiration", "0s")
    assert "(!)" in out.splitlines()[1]
    rc, out, _ = run(farm, capsys, "worker", "info", "w1")
    assert out.splitlines()[0].split() == ["Index", "Loc", "Plan", "JobID", "JobState", "JobStage", "ThreadState", "LastErr"]
    assert out.splitlines()[1].split() == ["0", "/w/t0", "sealer", farm.thread.job_id, "PC1Done", "NULL", "Running", "NULL"]
    rc, out, _ = run(farm, capsys, "worker", "pause", "w1", "0")
    assert rc == 0 and "pause call done, ok = true" in out
    rc, out, _ = run(farm, capsys, "worker", "resume", "w1", "0", "PC1Done", json_out=True)
    assert out == {"resumed": True} and farm.thread.calls == [("pause",), ("resume", "PC1Done")]
    rc, out, _ = run(farm, capsys, "worker", "wdpost", "list", "--all", json_out=True)
    assert rc == 0 and out["Jobs"] == [] and out["MaxTry"] >= 1
    rc, out, _ = run(farm, capsys, "worker", "wdpost", "list")
    assert out.split() == ["JobID", "MinerID", "DDL", "Partitions", "Sectors", "Worker", "State", "Try", "CreateAt", "Elapsed",
                           "Heartbeat", "Error"]
    rc, out, _ = run(farm, capsys, "worker", "wdpost", "list", "--detail")
    assert out.split()[:3] == ["JobID", "Prefix", "Miner"]
    rc, out, _ = run(farm, capsys, "worker", "wdpost", "remove-all")
    assert rc == 0 and "--really-do-it" in out
    rc, _, err = run(farm, capsys, "worker", "wdpost", "reset", "no-such-job")
    assert rc == 2 and "no-such-job" in err


def test_storage(farm, capsys, tmp_path):
    rc, out, _ = run(farm, capsys, "storage", "list")
    lines = out.splitlines()
    assert lines[0] == "persist-1:" and lines[1].startswith("\tPath: ")
    for key in ("Type", "ReadOnly", "Weight", "Total", "Free", "Used", "UsedPercent", "Reserved"):
        assert any(line.startswith(f"\t{key}: ") for line in lines), key
    rc, out, _ = run(farm, capsys, "storage", "list", json_out=True)
    assert out["stores"][0]["Name"] == "persist-1"
    rc, out, _ = run(farm, capsys, "storage", "find", "1000", str(farm.sid["Number"]))
    assert rc == 0 and out.strip() == f"s-t01000-{farm.sid['Number']} not found"
    assert cli.main(["util", "storage", "gen-sectorstore-json", str(tmp_path), "--readonly", "--weight", "3",
                     "--allow-miners", "1000", "--strict=false"]) == 0
    cfg = json.loads((tmp_path / "sectorstore.json").read_text())
    assert (cfg["ReadOnly"], cfg["Weight"], cfg["AllowMiners"], cfg["DenyMiners"], cfg["Strict"]) == (True, 3, [1000], None, False)
    assert len(cfg["ID"]) == 36 and cfg["PluginName"] == ""


def test_proving_snap_chain_miner(farm, capsys):
    rc, out, _ = run(farm, capsys, "sealer", "proving", "--miner", "1000", "info")
    for field in ("Sealer: f01000", "Current Epoch:", "Proving Period Boundary:", "Proving Period Start:",
                  "Next Period Start:", "Faults:", "Recovering:", "Deadline Index:", "Deadline Sectors:", "Deadline Open:",
                  "Deadline Close:", "Deadline Challenge:", "Deadline FaultCutoff:"):
        assert any(line.startswith(field) for line in out.splitlines()), (field, out)
    rc, out, _ = run(farm, capsys, "sealer", "proving", "deadlines", "--miner", "1000")
    assert out.splitlines()[1].split()[:3] == ["deadline", "open", "partitions"] and len(out.splitlines()) == 50
    rc, out, _ = run(farm, capsys, "sealer", "proving", "--miner", "1000", "deadline", "0", "-n")
    assert out.startswith("Deadline Index:           0\n") and "Proven Partitions:" in out
    rc, out, _ = run(farm, capsys, "sealer", "proving", "--miner", "1000", "faults")
    assert out.splitlines()[:2] == ["Miner: f01000", "deadline  partition  sectors  recovering"]
    rc, out, _ = run(farm, capsys, "sealer", "proving", "--miner", "1000", "check", "0", "--detail", json_out=True)
    assert rc == 0 and out == {"sectors": []}
    rc, _, err = run(farm, capsys, "sealer", "proving", "info")
    assert rc == 2 and "--miner: a miner actor id is required" in err
    rc, out, err = run(farm, capsys, "sealer", "proving", "--miner", "1000", "sector-info", "x", str(farm.sid["Number"]))
    assert rc == 1 and out == "" and "#0 x is not a valid sector number" in err       # not on chain: ProvingSectorInfo says so
    assert f"sector {farm.sid['Number']}: failed to get info: " in err and "no sector info on chain" in err
    rc, out, _ = run(farm, capsys, "sealer", "snap", "fetch", "1000", "0", json_out=True)
    assert rc == 0 and out == {"Total": 0, "Diff": 0}
    rc, out, _ = run(farm, capsys, "sealer", "snap", "fetch", "1000", "0")
    assert out.strip() == "candidate sectors fetched: available-in-deadline=0, added=0"
    rc, out, _ = run(farm, capsys, "sealer", "snap", "candidates", "t01000")
    assert rc == 0 and out.strip() == "no candidates available"
    rc, out, _ = run(farm, capsys, "chain", "head", json_out=True)
    assert rc == 0 and isinstance(out["Epoch"], int)
    rc, out, _ = run(farm, capsys, "miner", "info", "f01000", json_out=True)
    assert rc == 0 and out["ID"] == 1000
    rc, out, _ = run(farm, capsys, "miner", "info", "1000")
    assert out.splitlines()[:3] == ["Miner: f01000", "SectorSize: 2KiB", "WindowPoStPartitionSectors: 2"]
    rc, _, err = run(farm, capsys, "sealer", "sectors", "rebuild", "1000", str(farm.sid["Number"]))
    assert rc == 2 and err.startswith("damocles: error: ")         # not on chain: the manager says why
    rc, _, err = run(farm, capsys, "sealer", "sectors", "unseal", "baga6ea4seaqno", "--actor", "1000")
    assert rc == 2 and 'flag "--actor" and "--sector" must be set together' in err


def test_daemon_is_the_manager_and_fetch_params(tmp_path, capsys):
    parser, rest = _resolve("daemon init")
    assert rest == [] and parser._defaults["func"] is _resolve("manager init")[0]._defaults["func"]
    assert cli.main(["util", "fetch-params", "2KiB", "--dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["proof"] == "StackedDrg2KiBV1_1" and out["sha256"] == "840057702eea7652cf97e04306c30fe57174714d90de156a25eddd6075c25b97"
    assert cli.main(["util", "fetch-params", "3KiB"]) == 2
    assert "unknown sector size '3KiB'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def proven(tmp_path_factory):
    """A manager process with one CC sector sealed by the builtin engine, proven and finalized."""
    from .manager_driver import ManagerProc, drive_sectors
    tmp = tmp_path_factory.mktemp("proven")
    (tmp / "m" / "persist-1").mkdir(parents=True)      # batches of one: no batching wait
    (tmp / "m" / "manager.toml").write_text(own_database(manager_toml(None, 1, 1, "1s", block_time="0s", check_interval="50ms",
                                                         miner={"SealProof": "StackedDrg2KiBV1_1"})))
    m = ManagerProc(tmp / "m")
    try:
        [sid] = drive_sectors(m, 1, tmp / "work")
        yield SimpleNamespace(url=m.rpc.url.removesuffix("/rpc/v0"), home=m.home, sid=sid, m=m)
    finally:
        m.stop()


def test_a_proven_sector_through_damocles_names(proven, capsys):
    n, name = str(proven.sid["Number"]), f"s-t01000-{proven.sid['Number']}"
    rc, out, _ = run(proven, capsys, "sealer", "sectors", "list")
    assert "Count: 0" in out                                   # finalized: offline in Damocles' terms
    rc, out, _ = run(proven, capsys, "sealer", "sectors", "list", "--offline")
    assert f"{name}:" in out and "\tFinalized: true, Removed: false" in out and "Count: 1" in out
    rc, out, _ = run(proven, capsys, "sealer", "sectors", "state", "1000", n)
    lines = out.splitlines()
    assert "\tFinalized: true" in lines and lines[lines.index("\tPreCommit Info:") + 1].startswith("\t\tCommD: baga6ea4seaq")
    assert lines[lines.index("\tPreCommit Info:") + 2].startswith("\t\tCommR: bagboea4b5abc")
    assert any(line.startswith("\tSeed: (") for line in lines) and not any(line == "\tPreCommit Message: NULL" for line in lines)
    rc, out, _ = run(proven, capsys, "storage", "find", "1000", n)
    assert out.splitlines() == [f'sector {name} located, sealed file in "persist-1", cache dir in "persist-1"',
                                'store instance "persist-1" exists', 'store instance "persist-1" exists']
    rc, out, _ = run(proven, capsys, "sealer", "proving", "--miner", "1000", "deadlines", json_out=True)
    [dl] = [d for d in out["deadlines"] if d["Sectors"]]
    rc, out, _ = run(proven, capsys, "sealer", "proving", "--miner", "1000", "deadline", str(dl["Index"]), "-n")
    assert "Partition Index:          0" in out and f"\tAll Sector Numbers:{' ' * 9}[{n}]" in out
    assert f"\tFaulty Sectors:{' ' * 12}0" in out and f"\tActive Sectors:{' ' * 12}1" in out
    rc, out, _ = run(proven, capsys, "sealer", "proving", "--miner", "1000", "check", str(dl["Index"]))
    assert out.splitlines()[0].split() == ["deadline", "partition", "good", "bad"]
    assert out.splitlines()[1].split() == [str(dl["Index"]), "0", "1", "0"]
    rc, out, _ = run(proven, capsys, "sealer", "proving", "--miner", "1000", "check", str(dl["Index"]), "--detail")
    assert out.splitlines()[1].split() == [str(dl["Index"]), "0", n, "good"]
    rc, out, _ = run(proven, capsys, "sealer", "proving", "--miner", "1000", "check", str(dl["Index"]), "--slow", "--state-check",
                     json_out=True)
    assert out == {"sectors": [{"Deadline": dl["Index"], "Partition": 0, "Sector": int(n), "Ok": True, "Error": ""}]}
    rc, out, _ = run(proven, capsys, "sealer", "proving", "--miner", "1000", "sector-info", n)
    info = json.loads(out)                                     # ProvingSectorInfo, tab-indented as Damocles prints it
    assert out.startswith('{\n\t"OnChain": {') and info["OnChain"]["SectorNumber"] == int(n)
    assert info["Private"]["Accesses"] == {"SealedFile": "persist-1", "CacheDir": "persist-1"}
    rc, out, err = run(proven, capsys, "sealer", "proving", "--miner", "1000", "simulate-wdpost", "--ddl-idx", str(dl["Index"]),
                       "--partition-idx", "0")
    assert rc == 0 and out.startswith(f"Simulate sectors [{{{info['OnChain']['SealProof']} {n} <nil> "
                                      f"{info['OnChain']['SealedCID']['/']}}}] wdpost start"), err
    rc, _, err = run(proven, capsys, "sealer", "proving", "--miner", "1000", "simulate-wdpost", "--ddl-idx", str(dl["Index"]),
                     "--partition-idx", "1")
    assert rc == 2 and "partition-idx is range out of partitions array: 1 <= 1" in err
    rc, out, _ = run(proven, capsys, "sealer", "snap", "fetch", "1000", str(dl["Index"]), json_out=True)
    assert out == {"Total": 1, "Diff": 1}
    rc, out, _ = run(proven, capsys, "sealer", "snap", "candidates", "1000")
    assert out.splitlines() == ["deadline  count", f"{dl['Index']:<8}  1"]
    rc, _, err = run(proven, capsys, "sealer", "sectors", "rebuild", "1000", n)
    assert rc == 2 and "is not lost: its files pass the proving check" in err
    (proven.home / "persist-1" / "sealed" / name).unlink()     # lost: now it may be rebuilt
    rc, out, err = run(proven, capsys, "sealer", "sectors", "rebuild", "1000", n, json_out=True)
    assert rc == 0 and out["State"] == "pending", err
    # a sector being rebuilt is online again (Damocles' online store), marked and selected by --rebuild only
    rc, out, _ = run(proven, capsys, "sealer", "sectors", "list", "--sealing=false", "--rebuild")
    assert f"{name}(rebuild):" in out and "Count: 1" in out
    rc, out, _ = run(proven, capsys, "sealer", "sectors", "list")
    assert "Count: 0" in out
    rc, out, _ = run(proven, capsys, "sealer", "sectors", "state", "1000", n)
    assert out.splitlines()[-2:] == ["Rebuild: true", ""] and "\tProveCommit Info:" in out
    assert out.splitlines()[out.splitlines().index("\tProveCommit Info:") + 1].startswith("\t\tProof: ")


def test_find_deal_and_unseal_find_the_sector_of_a_deal(farm, capsys, tmp_path, monkeypatch):
    piece = tmp_path / "piece.bin"
    piece.write_bytes(b"damocles" * 100)
    assert cli.main(["util", "piece", "import", str(piece), "--miner", "1000", "--api", farm.url, "--home", str(farm.home),
                     "--json"]) == 0
    deal = json.loads(capsys.readouterr().out)
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "find-deal", str(deal["DealID"]))
    assert out.strip() == "Not Found"
    rpc = RPCClient(farm.url, issue_token(farm.svc.secret, "write", "w1"))
    sid = rpc.call("Venus.AllocateSector", {})["ID"]
    assert [d["DealInfo"]["DealID"] for d in rpc.call("Venus.AcquireDeals", sid, {})] == [deal["DealID"]]
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "find-deal", str(deal["DealID"]))   # FindSectorsWithDeal, online
    assert out.splitlines() == [f"s-t01000-{sid['Number']}", ""]
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "find-deal", str(deal["DealID"]), "--offline")
    assert out.strip() == "Not Found"
    rc, out, _ = run(farm, capsys, "sealer", "sectors", "state", "1000", str(sid["Number"]))
    assert f"\tDealID: builtinmarket({deal['DealID']})" in out.splitlines()
    assert f"\tPiece: {{ cid: {deal['PieceCID']}; size: {deal['PieceSize']}; offset: 0 }}" in out.splitlines()
    # FindSectorWithPiece looks among offline (sealed) sectors, as Damocles' CLI asks: this one is still sealing
    rc, _, err = run(farm, capsys, "sealer", "sectors", "unseal", deal["PieceCID"], "-o", "/tmp/x")
    assert rc == 2 and f"no sector found with piece {deal['PieceCID']}" in err, err
    # --unseal-file: the piece cut out of an unsealed sector file here, offset and size from the sector's pieces
    from appliance.proofs.fr32 import pad
    payload = piece.read_bytes()
    unsealed = tmp_path / "unsealed"
    unsealed.write_bytes(pad(payload + bytes(deal["PieceSize"] // 128 * 127 - len(payload))) + bytes(1024))
    rc, out, err = run(farm, capsys, "sealer", "sectors", "unseal", deal["PieceCID"], "--actor", "1000", "--sector",
                       str(sid["Number"]), "--unseal-file", str(unsealed), "-o", str(tmp_path / "out"), json_out=True)
    assert rc == 0 and (out["offset"], out["size"], out["payload_size"]) == (0, deal["PieceSize"], len(payload)), err
    assert (tmp_path / "out").read_bytes() == payload
    rc, _, err = run(farm, capsys, "sealer", "sectors", "unseal", deal["PieceCID"], "--actor", "1000", "--sector",
                     str(sid["Number"]), "--unseal-file", str(unsealed), "--piece-size", "1000")
    assert rc == 2 and "invalid piece size: 1000" in err
    # UnsealPiece(sid, piece, offset, size, dest), unpadded as Damocles sends them: the manager decides
    calls, call = [], RPCClient.call
    monkeypatch.setattr(RPCClient, "call", lambda self, method, *params: calls.append((method, list(params))) or
                        call(self, method, *params))
    rc, _, err = run(farm, capsys, "sealer", "sectors", "unseal", deal["PieceCID"], "--actor", "1000", "--sector",
                     str(sid["Number"]), "--offset", "128", "--dest", "piecestore")
    assert rc == 2 and "offset/size: only whole pieces are unsealed" in err, err
    assert calls == [("Venus.FindSectorInAllStates", [sid]),
                     ("Venus.UnsealPiece", [sid, {"/": deal["PieceCID"]}, 127, deal["PieceSize"] // 128 * 127, "piecestore"])]


def test_wdpost_jobs_under_worker_wdpost(farm, capsys):
    """Jobs made as the poster makes them (PoSt is off in this farm, so nothing else does)."""
    def job_input(sectors):
        return {"Sectors": [{"SectorId": n, "CommR": [0] * 32, "Upgrade": False,
                             "Accesses": {"SealedFile": "persist-1", "CacheDir": "persist-1"}} for n in sectors],
                "MinerId": 1000, "ProofType": "StackedDrgWindow2KiBV1_1", "Seed": [1] * 32}
    a = farm.svc.jobs.create(1000, 3, 0, [0, 1], job_input((1, 2, 3)))
    b = farm.svc.jobs.create(1000, 4, 0, [0], job_input((4,)))
    [running] = farm.svc.jobs.allocate([1000], None, 1, "prover-1")
    rc, out, _ = run(farm, capsys, "worker", "wdpost", "list")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows[a][1:7] == ["f01000", "3", "[0,", "1]", "3", "prover-1"] and rows[a][8:9] == ["1"]   # id, miner, ddl, parts, sectors
    assert rows[b][1:5] == ["f01000", "4", "[0]", "1"] and rows[b][-2:] == ["-", "-"]                 # not started: no elapsed
    assert running["Id"] == a
    rc, out, _ = run(farm, capsys, "worker", "wdpost", "reset", a, json_out=True)
    assert out == {"reset": [a]} and farm.svc.jobs.get(a)["WorkerName"] == ""
    rc, out, _ = run(farm, capsys, "worker", "wdpost", "remove", b)
    assert out.strip() == f"wdpost job {b}: remove done"
    rc, out, _ = run(farm, capsys, "worker", "wdpost", "remove-all", "--really-do-it")
    assert out.strip() == f"wdpost job {a} removed" and farm.admin.call("Venus.WdPoStAllJobs")["Jobs"] == []


def test_damocles_worker_control_commands(farm, capsys, monkeypatch):
    """damocles-worker's `worker -H HOST:PORT list|pause -i N|resume -i N -s STATE` (worker/mod.rs):
    straight to the worker's RPC, its address before or after the command, or from the environment."""
    home = ["--home", str(farm.home), "--json"]
    before = len(farm.thread.calls)
    assert cli.main(["worker", "-H", farm.worker_dest, "list", *home]) == 0
    assert json.loads(capsys.readouterr().out)["threads"][0]["job_id"] == farm.thread.job_id
    assert cli.main(["worker", "pause", "-i", "0", "-H", farm.worker_dest, *home]) == 0
    monkeypatch.setenv("DAMOCLES_WORKER_HOST", farm.worker_dest)
    assert cli.main(["worker", "resume", "-i", "0", "-s", "PC2Done", *home]) == 0
    assert farm.thread.calls[before:] == [("pause",), ("resume", "PC2Done")]
    capsys.readouterr()
    # enable-dump / disable-dump: DUMP_ERR_RESP_<pid> on the worker (this one runs in the test's process)
    home = home[:2]
    try:
        assert cli.main(["worker", "enable_dump", "--child_pid", "7", "--dump_dir", str(farm.home), *home]) == 0
        assert os.environ["DUMP_ERR_RESP_7"] == str(farm.home.resolve())
        assert cli.main(["worker", "disable-dump", "--child-pid", "7", *home]) == 0
        assert "DUMP_ERR_RESP_7" not in os.environ
    finally:
        os.environ.pop("DUMP_ERR_RESP_7", None)
    capsys.readouterr()
    assert cli.main(["worker", "enable-dump", "--child-pid", "7", "--dump-dir", str(farm.home / "nope"), *home]) != 0
    assert "is not a directory" in capsys.readouterr().err


def test_worker_remove_frees_the_name_for_another_credential(farm, capsys):
    """`util worker remove` (WorkerGetPingInfo + WorkerPingInfoRemove): the worker leaves the list
    and its name's binding to the credential that held it goes with it, so the operator can move
    the name to a re-installed machine with a new token at once."""
    old = RPCClient(farm.url, issue_token(farm.svc.secret, "write", "host-old"))
    new = RPCClient(farm.url, issue_token(farm.svc.secret, "write", "host-new"))
    info = {"Name": "moving-1", "Dest": "10.0.0.1:17890", "Version": "v-test",
            "Summary": {"Threads": 1, "Empty": 1, "Paused": 0, "Running": 0, "Waiting": 0, "Errors": 0}}
    old.call("Venus.WorkerPing", info)
    with pytest.raises(RPCError) as refused:
        new.call("Venus.WorkerPing", {**info, "Dest": "10.0.0.2:17890"})
    assert refused.value.code == UNAUTHORIZED and "registered by another credential" in str(refused.value)
    rc, out, _ = run(farm, capsys, "worker", "remove", "moving-1")
    assert rc == 0 and out.strip() == "'moving-1' removed"
    assert farm.admin.call("Venus.WorkerGetPingInfo", "moving-1") is None
    new.call("Venus.WorkerPing", {**info, "Dest": "10.0.0.2:17890"})      # the re-installed machine takes the name
    moved = farm.admin.call("Venus.WorkerGetPingInfo", "moving-1")["Info"]
    assert moved["Dest"] == "10.0.0.2:17890" and moved["Owner"] == "name:host-new"
    with pytest.raises(RPCError) as refused:
        old.call("Venus.WorkerPing", info)                                 # and the old credential is the stranger now
    assert refused.value.code == UNAUTHORIZED
    rc, _, err = run(farm, capsys, "worker", "remove", "no-such-worker")
    assert rc == 2 and "worker info not found. please make sure the instance name is correct: no-such-worker" in err


def test_storage_release_reserved_and_snap_cancel_commit(farm, capsys):
    """`util storage release-reserved` (StoreReleaseReserved) and `util sealer snap cancel-commit`
    (SnapUpCancelCommitment) on a sector of the farm."""
    rpc = RPCClient(farm.url, issue_token(farm.svc.secret, "write", "w1"))
    n = str(farm.sid["Number"])
    assert rpc.call("Venus.StoreReserveSpace", farm.sid, 2048, None)["Name"] == "persist-1"
    rc, out, _ = run(farm, capsys, "storage", "list", json_out=True)
    assert out["stores"][0]["Reserved"] == 2048
    rc, out, _ = run(farm, capsys, "storage", "release-reserved", "1000", n)
    assert rc == 0 and out.strip() == f"s-t01000-{n} released: true"
    rc, out, _ = run(farm, capsys, "storage", "release-reserved", "f01000", n, json_out=True)
    assert out == {"sector": farm.sid, "released": False}
    rc, out, _ = run(farm, capsys, "storage", "list", json_out=True)
    assert out["stores"][0]["Reserved"] == 0
    rc, out, _ = run(farm, capsys, "sealer", "snap", "cancel-commit", "1000", n)
    assert rc == 0 and out.strip() == f"s-t01000-{n}: cancel-commit done"
    rc, _, err = run(farm, capsys, "sealer", "snap", "cancel-commit", "1000", "x")
    assert rc == 2 and "sector number: 'x' is not a number" in err


def test_commands_send_the_requests_damocles_cli_sends(farm, capsys, monkeypatch):
    """Method and params of each call, as damocles-manager's Go CLI makes them (internal/
    util_sealer_sectors.go, util_sealer_snap.go, util_sealer_proving.go, util_storage.go,
    util_worker.go at the commit above): SectorWorkerState "online"/"offline",
    SectorWorkerJobAll 0, abi.SectorID objects, the deadline index as a number."""
    calls = []
    call = RPCClient.call

    def recording(self, method, *params):
        calls.append((method, list(params)))
        return call(self, method, *params)
    monkeypatch.setattr(RPCClient, "call", recording)
    sid, n = farm.sid, str(farm.sid["Number"])
    for args, sent in (
            # ours: a page at a time (Damocles' ListSectors(online|offline, all) lists every sector)
            (("sealer", "sectors", "list"), [("Venus.ListSectorsPage", [{"Online": True, "Limit": 100}])]),
            (("sealer", "sectors", "list", "--offline", "--rebuild"), [("Venus.ListSectorsPage", [{"Online": False, "Limit": 100}])]),
            (("sealer", "sectors", "state", "1000", n), [("Venus.FindSectorInAllStates", [sid])]),
            (("sealer", "sectors", "state", "export-json", "1000", n), [("Venus.FindSectorInAllStates", [sid])]),
            (("sealer", "sectors", "find-deal", "77"), [("Venus.FindSectorsWithDeal", ["online", 77])]),
            (("sealer", "sectors", "find-deal", "77", "--offline"), [("Venus.FindSectorsWithDeal", ["offline", 77])]),
            (("sealer", "sectors", "rebuild", "1000", n, "--pieces-available"),
             [("Venus.SectorSetForRebuild", [sid, {"PiecesAvailable": True}])]),
            (("sealer", "sectors", "unseal", "baga6ea4seaqno"), [("Venus.FindSectorWithPiece", ["offline", {"/": "baga6ea4seaqno"}])]),
            (("sealer", "snap", "fetch", "1000", "3"), [("Venus.SnapUpPreFetch", [1000, 3])]),
            (("sealer", "snap", "candidates", "1000"), [("Venus.SnapUpCandidates", [1000])]),
            (("sealer", "snap", "cancel-commit", "1000", n), [("Venus.SnapUpCancelCommitment", [sid])]),
            (("sealer", "proving", "--miner", "1000", "sector-info", n), [("Venus.ProvingSectorInfo", [sid])]),
            (("storage", "release-reserved", "1000", n), [("Venus.StoreReleaseReserved", [sid])]),
            (("worker", "remove", "no-such-worker"), [("Venus.WorkerGetPingInfo", ["no-such-worker"])])):
        calls.clear()
        run(farm, capsys, *args)
        assert calls == sent, (args, calls)
