"""The worker config exactly as Damocles' worker reads it (issue 15, item 4).

The fixtures in tests/fixtures/damocles/ are our own TOML, written from Damocles' sample config
and config docs, ipfs-force-community/damocles at commit 4235a89557219de436bba441e727af3a42f903f0:
  worker-mock.toml          damocles-worker/assets/damocles-worker.mock.toml, commented keys set
  worker-docs.toml          docs/en/03.damocles-worker-config.md (every section's keys, external
                            processor options, the special examples) and
                            docs/en/12.damocles-worker-config-guide.md (numa_preferred + cpuset)
  worker-docs-minimal.toml  03's "minimal working configuration" ([remote_store], [processors.limit])
The readers they exercise are Damocles' damocles-worker/src/config.rs (humantime_serde durations,
scan_persist_stores), src/util/net.rs (rpc_addr: multiaddr or URL -> .../rpc/v0),
src/sealing/sealing_thread/planner/mod.rs (plan names) and src/sealing/config.rs (hot config).
(03's `args = ["--args-1", "1", --"args-2", "2"]` is not valid TOML: the fixture quotes it.)"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from appliance.config import ConfigError
from appliance.config.address import manager_endpoint
from appliance.config.humantime import parse_humantime
from appliance.hw.check import check_file, check_worker
from appliance.hw.machine import discover
from appliance.worker.config import ThreadConfig, SealingConfig, load_worker_config, parse_worker_config
from appliance.worker.journal import Journal
from appliance.worker.record import SectorRecord
from appliance.worker.thread import SealingThread

FIXTURES = Path(__file__).parent / "fixtures" / "damocles"
BASE = {"sector_manager": {"rpc_client": {"addr": "/ip4/127.0.0.1/tcp/1789"}}}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """The fixtures' relative paths resolve in a scratch directory holding what they name."""
    monkeypatch.chdir(tmp_path)
    for tree_d in ("tmp/2k", "tmp/32g", "tmp/64g"):
        (tmp_path / tree_d).mkdir(parents=True)
        (tmp_path / tree_d / "sc-02-data-tree-d.dat").write_bytes(b"\0" * 64)
    return tmp_path


# ------------------------------------------------------------------------------ the fixtures load

def test_damocles_mock_toml_loads(scratch):
    cfg = load_worker_config(FIXTURES / "worker-mock.toml")           # CPUs 0-47 on any machine
    assert cfg.name == "worker-#1" and (cfg.rpc_host, cfg.rpc_port) == ("192.168.1.100", 17891)
    assert cfg.metrics_enable and cfg.manager_url == "http://127.0.0.1:1789/rpc/v0"
    assert cfg.sealing.max_retries == 3 and cfg.sealing.rpc_polling_interval == 15.0
    assert cfg.sealing.min_deal_space == 1024 and cfg.sealing.allowed_sizes == ("32GiB", "64GiB")
    assert [t.location for t in cfg.threads] == [scratch / f"mock-tmp/store{i}" for i in (1, 2, 3)]
    assert cfg.threads[0].sealing.rpc_polling_interval == 180.0 and cfg.threads[1].sealing.rpc_polling_interval == 15.0
    assert [(a.name, a.location) for a in cfg.attached] == [("persist-store1", Path("mock-tmp/remote"))]
    assert cfg.concurrent == {"add_pieces": 5, "pc1": 3, "pc2": 2, "c2": 1}
    assert cfg.staggered == {"pc1": 60.0}                              # "1min"
    assert [p.cpuset_text for p in cfg.processors["pc1"]] == ["0-11", "12-23"]
    assert cfg.processors["c2"][0].cpuset == tuple(range(32, 48))
    assert "transfer" not in cfg.processors and "tree_d" in cfg.processors
    said = "\n".join(cfg.warnings)
    assert "[[processors.transfer]]: not started" in said and "[attached_selection]: ignored" in said
    assert "'User-Agent' is not sent" in said


def test_damocles_docs_toml_loads(scratch):
    for d in ("filecoin/a", "filecoin/b", "store1"):
        (scratch / d).mkdir(parents=True)
        (scratch / d / "sectorstore.json").write_text(json.dumps({"ID": f"id-{d}", "Name": d.replace("/", "-")}))
    cfg = load_worker_config(FIXTURES / "worker-docs.toml")
    assert cfg.manager_url == "http://127.0.0.1:1789/rpc/v0"          # ws:// is the same endpoint over HTTP
    assert cfg.ping_interval == 30.0 and cfg.local_pieces_dirs == [Path("pieces-01"), Path("pieces-02")]
    assert cfg.sealing.request_task_max_retries == 3 and cfg.sealing.min_deal_space == 8 << 30
    assert [t.plan for t in cfg.threads] == ["snapup", "sealer", "rebuild", "unseal", "wdpost", "niporep"]
    assert [t.refused is not None for t in cfg.threads] == [False] * 5 + [True]
    assert cfg.threads[4].location is None and cfg.threads[4].sealing.recover_interval == 15.0
    assert cfg.threads[2].sealing.allowed_miners == (2468,) and cfg.threads[2].sealing.allowed_sizes == ("64GiB",)
    assert [(a.name, a.readonly) for a in cfg.attached] == [("remote-store1", True), ("filecoin-a", False),
                                                            ("filecoin-b", False), ("store1", False)]
    assert cfg.concurrent["pc1"] == 29 and cfg.concurrent["window_post"] == 2     # limitation wins over limit
    assert "[processors.limit]: ignored, [processors.limitation.concurrent] replaces it" in cfg.warnings
    assert cfg.staggered == {"pc1": 300.0, "pc2": 240.0} and cfg.ext_locks == {"gpu1": 1, "gpu2": 1}
    pc1 = cfg.processors["pc1"][0]
    assert pc1.bin == "./dist/bin/damocles-worker-plugin-pc1" and pc1.stable_wait == 5.0 and pc1.locks == ("gpu1",)
    assert cfg.processors["pc2"][1].cpuset_text == "20-23,36-45"
    assert {"synth_proof", "transfer", "sealing_daemons"}.isdisjoint(cfg.processors)
    said = "\n".join(cfg.warnings)
    assert "[[sealing_thread]][5].plan: non-interactive PoRep" in said and "the other threads do" in said
    assert "[[processors.synth_proof]]: not started" in said and "[[processors.sealing_daemons]]: not started" in said


def test_damocles_docs_minimal_toml_loads(scratch):
    cfg = load_worker_config(FIXTURES / "worker-docs-minimal.toml")
    assert cfg.manager_url == "http://10.0.0.1:1789/rpc/v0"
    assert [a.name for a in cfg.attached] == ["remote-store1", "remote-store"]
    assert cfg.concurrent == {"pc1": 4, "pc2": 2, "c2": 1}
    assert set(cfg.static_tree_d) == {"32GiB", "64GiB"}
    assert any("[remote_store] is deprecated" in w for w in cfg.warnings)


def test_hardware_is_a_finding_of_worker_check_not_a_parse_error(scratch):
    """The mock's cpusets (0-47), NUMA node 1 and the docs' CUDA devices on a 2-CPU machine: the
    file loads, and `damocles worker check` names each as an error; the niporep thread and the
    processors not run are its warnings."""
    m = discover()
    if max(m.cpus) >= 47:
        pytest.skip("this machine has CPU 47")
    report = check_file(FIXTURES / "worker-mock.toml", m)
    errors = "\n".join(map(str, report.errors))
    assert "[[processors.c2]][0].cgroup.cpuset: CPU" in errors and "do not exist" in errors
    if 1 not in m.node_cpus:
        assert "[[processors.pc1]][1].numa_preferred: NUMA node 1 does not exist" in errors
    (scratch / "store1").mkdir()
    docs = check_worker(load_worker_config(FIXTURES / "worker-docs.toml"), m)
    warnings = "\n".join(map(str, docs.warnings))
    assert "[[sealing_thread]][5].plan: non-interactive PoRep" in warnings
    assert "[[processors.synth_proof]]: not started" in warnings


# ------------------------------------------------------------------------------- durations

@pytest.mark.parametrize("text,seconds", [
    ("1min", 60), ("5min", 300), ("2h 30m", 9000), ("30s", 30), ("1day", 86400), ("100ms", 0.1),
    ("2h 37min", 9420), ("20 min 17 nsec ", 1200 + 17e-9), ("1week", 604800), ("3months", 3 * 2_630_016),
    ("12M", 12 * 2_630_016), ("1year", 31_557_600), ("17y", 17 * 31_557_600), ("7hrs", 25200), ("50seconds", 50),
    ("31millis", 0.031), ("78us", 78e-6), ("163µs", 163e-6), ("1 min", 60), ("2days", 172800),
    # what this project accepted before and still does (errors in humantime, so no conflict)
    ("1m30s", 90), ("1.5h", 5400), ("30", 30), (45, 45.0),
])
def test_humantime_durations(text, seconds):
    assert parse_humantime(text) == pytest.approx(seconds)
    cfg = parse_worker_config({**BASE, "worker": {"ping_interval": text}, "sealing": {"seal_interval": text},
                               "processors": {"limitation": {"staggered": {"pc1": text}}, "pc1": [{"stable_wait": text}]}})
    assert cfg.ping_interval == cfg.sealing.seal_interval == cfg.staggered["pc1"] == pytest.approx(seconds)
    assert cfg.processors["pc1"][0].stable_wait == pytest.approx(seconds)


@pytest.mark.parametrize("key,value,raw", [
    ("[sealing].recover_interval", "5 parsecs", lambda v: {"sealing": {"recover_interval": v}}),
    ("[worker].ping_interval", "10s5", lambda v: {"worker": {"ping_interval": v}}),
    ("[[sealing_thread]][0].sealing.seal_interval", "-1s",
     lambda v: {"sealing_thread": [{"location": "x", "sealing": {"seal_interval": v}}]}),
    ("[processors.limitation.staggered].pc1", "1h,", lambda v: {"processors": {"limitation": {"staggered": {"pc1": v}}}}),
    ("[[processors.pc1]][0].stable_wait", "", lambda v: {"processors": {"pc1": [{"stable_wait": v}]}}),
    ("[sealing].rpc_polling_interval", True, lambda v: {"sealing": {"rpc_polling_interval": v}}),
])
def test_bad_durations_name_the_key_and_value(key, value, raw):
    with pytest.raises(ConfigError) as exc:
        parse_worker_config({**BASE, **raw(value)})
    assert str(exc.value).startswith(f"{key}: invalid duration {value!r}")


# ------------------------------------------------------------------------------- addresses

@pytest.mark.parametrize("addr,url", [
    ("/ip4/127.0.0.1/tcp/1789", "http://127.0.0.1:1789/rpc/v0"),
    ("/ip4/1.2.3.4/tcp/1789/http", "http://1.2.3.4:1789/rpc/v0"),
    ("/ip4/1.2.3.4/tcp/1789/https", "https://1.2.3.4:1789/rpc/v0"),
    ("/dns/host/tcp/1789/http", "http://host:1789/rpc/v0"),
    ("/dns4/hello.com/tcp/1789", "http://hello.com:1789/rpc/v0"),
    ("/dns6/hello.com/tcp/1789", "http://hello.com:1789/rpc/v0"),
    ("/ip6/2001:db8:3333:4444:5555:6666:7777:8888/tcp/1789", "http://[2001:db8:3333:4444:5555:6666:7777:8888]:1789/rpc/v0"),
    ("/ip4/1.2.3.4/tcp/1789/ws", "http://1.2.3.4:1789/rpc/v0"),
    ("/dns/mgr/tcp/443/wss", "https://mgr:443/rpc/v0"),
    ("/dns/mgr/tcp/443/tls/ws", "https://mgr:443/rpc/v0"),
    ("/ip4/1.2.3.4/tcp/1789/p2p/12D3KooWabc", "http://1.2.3.4:1789/rpc/v0"),
    ("/dns/mgr", "http://mgr/rpc/v0"),
    ("ws://127.0.0.1:1789", "http://127.0.0.1:1789/rpc/v0"),
    ("wss://mgr.example:1789/rpc/v0", "https://mgr.example:1789/rpc/v0"),
    ("http://hello.com:1789", "http://hello.com:1789/rpc/v0"),
    ("http://hello.com:1789/some/path", "http://hello.com:1789/rpc/v0"),         # Damocles replaces the path
    ("https://[::1]:1789", "https://[::1]:1789/rpc/v0"),
])
def test_manager_addresses(addr, url):
    assert manager_endpoint(addr) == url
    assert parse_worker_config({"sector_manager": {"rpc_client": {"addr": addr}}}).manager_url == url


@pytest.mark.parametrize("addr,msg", [
    ("/ip4/999.1.1.1/tcp/1789", "is not an IPv4 address"),
    ("/ip4/1.2.3.4/tcp/99999", "is not a number from 0 to 65535"),
    ("/tcp/1789", "names no host"),
    ("/ip4/1.2.3.4/tcp", "/tcp needs a value"),
    ("/foo/bar", "'foo' is not a multiaddr protocol"),
    ("ftp://host:21", "the scheme must be http, https, ws or wss"),
    ("ws://:1789", "names no host"),
    ("localhost:1789", "neither a URL nor a multiaddr"),
    (1789, "is not an address"),
])
def test_bad_manager_addresses_are_refused(addr, msg):
    with pytest.raises(ConfigError, match=r"\[sector_manager.rpc_client\].addr: .*" + msg):
        parse_worker_config({"sector_manager": {"rpc_client": {"addr": addr}}})


def test_authorization_header_is_the_manager_token(monkeypatch):
    monkeypatch.delenv("DAMOCLES_TOKEN", raising=False)
    cfg = parse_worker_config({"sector_manager": {"rpc_client": {"addr": "ws://m:1", "headers": {"Authorization": "Bearer abc"}}}})
    assert cfg.manager_token == "abc" and not cfg.warnings


# ------------------------------------------------------------------------- plans, processors

def test_every_damocles_plan_is_known_and_one_we_cannot_run_stops_only_its_thread(tmp_path):
    threads = [{"location": str(tmp_path / p), "plan": p} for p in ("sealer", "snapup", "rebuild", "unseal", "niporep")]
    cfg = parse_worker_config({**BASE, "sealing_thread": [*threads, {"plan": "wdpost"}]})
    assert [(t.plan, bool(t.refused)) for t in cfg.threads] == [
        ("sealer", False), ("snapup", False), ("rebuild", False), ("unseal", False), ("niporep", True), ("wdpost", False)]
    assert cfg.warnings == ["[[sealing_thread]][4].plan: non-interactive PoRep (plan \"niporep\") cannot run on this "
                            "worker yet: this thread does not start; the other threads do"]
    with pytest.raises(ConfigError, match="'bake' is not one of sealer, snapup, rebuild, unseal, wdpost, niporep"):
        parse_worker_config({**BASE, "sealing_thread": [{"location": "x", "plan": "bake"}]})


def test_refused_thread_shows_why():
    from appliance.worker.control import RefusedThread
    t = RefusedThread(3, ThreadConfig(Path("/x"), "niporep", SealingConfig(), "non-interactive PoRep ..."))
    s = t.summary()
    assert s["plan"] == "niporep" and s["thread_state"] == {"state": "Paused", "elapsed": 0}     # Damocles' shape: elapsed s
    assert s["last_error"] == "crit: non-interactive PoRep ..."


@pytest.mark.parametrize("stage", ["synth_proof", "transfer", "sealing_daemons"])
def test_processor_types_damocles_knows_load_and_those_not_run_are_findings(stage):
    cfg = parse_worker_config({**BASE, "processors": {stage: [{"cgroup": {"cpuset": "0"}}]}})
    assert stage not in cfg.processors
    assert any(w.startswith(f"[[processors.{stage}]]: not started") for w in cfg.warnings)


def test_every_stage_this_worker_runs_may_have_an_external_bin():
    from appliance.worker.config import EXTERNAL_STAGES, NOT_RUN_PROCESSORS, PROCESSOR_STAGES
    assert set(EXTERNAL_STAGES) == set(PROCESSOR_STAGES) - set(NOT_RUN_PROCESSORS)
    cfg = parse_worker_config({**BASE, "processors": {"snap_encode": [{"bin": "/opt/encode"}, {"concurrent": 2}]}})
    assert [p.index for p in cfg.processors["snap_encode"]] == [0, 1] and cfg.processors["snap_encode"][0].bin == "/opt/encode"
    assert not any("snap_encode" in w for w in cfg.warnings)


def test_transfer_runs_only_as_an_external_bin():
    cfg = parse_worker_config({**BASE, "processors": {"transfer": [{"bin": "/opt/transfer"}, {"concurrent": 2}],
                                                      "tree_d": [{"bin": "/opt/treed"}]}})
    assert [p.index for p in cfg.processors["transfer"]] == [0] and cfg.processors["tree_d"][0].bin == "/opt/treed"
    assert "[[processors.transfer]]: not started: entry 1 has no `bin`" in "\n".join(cfg.warnings)


# ------------------------------------------------------------------------ scan_persist_stores

def _store(path: Path, **meta) -> Path:
    path.mkdir(parents=True)
    (path / "sectorstore.json").write_text(json.dumps(meta))
    return path


def test_scan_persist_stores_attaches_every_directory_with_sectorstore_json(tmp_path):
    _store(tmp_path / "nfs/b", ID="id-b", Name="", ReadOnly=True, Strict=False, Weight=0, AllowMiners=[1], Meta={})
    _store(tmp_path / "nfs/a", Name="store-a", ReadOnly=False)
    _store(tmp_path / "nfs/.hidden", Name="hidden")                     # glob `*` matches dot-dirs, as Rust's
    _store(tmp_path / "nfs/c")                                          # no Name, no ID: the location is the name
    (tmp_path / "nfs/empty").mkdir()                                    # no sectorstore.json: not a store
    (tmp_path / "nfs/file").write_text("x")
    _store(tmp_path / "other", Name="other")
    cfg = parse_worker_config({**BASE, "worker": {"scan_persist_stores": [str(tmp_path / "nfs/*"), str(tmp_path / "other")]},
                               "attached": [{"name": "explicit", "location": str(tmp_path / "x")}]})
    assert [(a.name, a.location, a.readonly) for a in cfg.attached] == [
        ("explicit", tmp_path / "x", False), ("hidden", tmp_path / "nfs/.hidden", False),
        ("store-a", tmp_path / "nfs/a", False), ("id-b", tmp_path / "nfs/b", True),
        (str(tmp_path / "nfs/c"), tmp_path / "nfs/c", False), ("other", tmp_path / "other", False)]
    alias = parse_worker_config({**BASE, "worker": {"ScanPersistStores": [str(tmp_path / "other")]}})
    assert [a.name for a in alias.attached] == ["other"]


def test_scan_persist_stores_errors_name_the_file_or_the_duplicate(tmp_path):
    _store(tmp_path / "s/one", Name="dup")
    with pytest.raises(ConfigError, match=r"\[worker\].scan_persist_stores: .*/s/one: duplicate persist store name 'dup' "
                                          r"\(also \[\[attached\]\]\[0\]\)"):
        parse_worker_config({**BASE, "worker": {"scan_persist_stores": [str(tmp_path / "s/*")]},
                             "attached": [{"name": "dup", "location": "/elsewhere"}]})
    (tmp_path / "s/one/sectorstore.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"s/one/sectorstore.json \(matched by .*\) cannot be read"):
        parse_worker_config({**BASE, "worker": {"scan_persist_stores": [str(tmp_path / "s/*")]}})
    with pytest.raises(ConfigError, match=r"\[worker\].scan_persist_stores: .* is not a list of glob patterns"):
        parse_worker_config({**BASE, "worker": {"scan_persist_stores": "/s/*"}})


# ---------------------------------------------------------------------------- hot plan switch

def _thread(location: Path, plan="sealer"):
    base = ThreadConfig(location, plan, SealingConfig(max_retries=3))
    return SealingThread(0, SimpleNamespace(location=location, sealing=base.sealing), base)


def _touch(path: Path, text: str, ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(ns, ns))           # a new mtime whatever the clock's resolution


def test_hot_config_switches_an_idle_threads_plan_and_removing_it_switches_back(tmp_path):
    """Damocles' docs (16.support-for-sector-rebuilding.md): `plan = "rebuild"` in
    <location>/config.toml switches the thread without a restart."""
    t = _thread(tmp_path)
    t._before_new_sector()
    assert t.switch_to is None
    _touch(tmp_path / "config.toml", 'plan = "rebuild"\n[sealing]\nmax_retries = 7\n', 1)
    t._before_new_sector()
    assert t.switch_to == "rebuild" and t.ctx.sealing.max_retries == 7 and t.config_error is None
    from appliance.worker.rebuild import RebuildThread
    nxt = RebuildThread(0, SimpleNamespace(location=tmp_path, sealing=t.ctx.sealing), ThreadConfig(tmp_path, "rebuild", t.ctx.sealing))
    nxt.adopt(t)
    nxt._before_new_sector()
    assert nxt.plan == "rebuild" and nxt.switch_to is None           # the file is not re-read: same mtime
    (tmp_path / "config.toml").unlink()
    nxt._before_new_sector()
    assert nxt.switch_to == "sealer" and nxt.ctx.sealing.max_retries == 3    # worker.toml's settings again


def test_a_sector_in_the_journal_finishes_under_the_plan_that_started_it(tmp_path):
    (tmp_path / "config.toml").write_text('plan = "unseal"\n')
    t = _thread(tmp_path)
    t.rec = SectorRecord(state="PC1Done", name="s-t01000-1", miner=1000, number=1, plan="sealer")
    t._before_new_sector()
    assert t.switch_to is None and t._hot.plan == "unseal"           # mid-sector: the sealer goes on
    # after a restart the worker.toml thread (sealer) finds an unseal task in the journal: it hands over
    t2 = _thread(tmp_path)
    t2.rec = SectorRecord(state="Unsealing", name="s-t01000-2", miner=1000, number=2, plan="unseal")
    (tmp_path / "config.toml").unlink()
    t2._before_new_sector()
    assert t2.switch_to == "unseal"


@pytest.fixture
def live(tmp_path):
    """A devnet manager in-process (one sector number to hand out) and a way to start a worker on it
    with one sealing thread at tmp_path/loc; everything is stopped at the end."""
    from appliance.manager.service import ManagerService, init_home
    from appliance.rpc.auth import issue_token
    from appliance.worker.service import WorkerService
    from .configs import NO_PROCESSORS, manager_toml, worker_config
    home = tmp_path / "manager"
    init_home(home, manager_toml(max_number=1))
    mgr = ManagerService(home)
    host, port = mgr.start("127.0.0.1:0")
    workers = []

    def start(sealing: dict) -> "WorkerService":
        raw = worker_config(f"http://{host}:{port}", issue_token(mgr.secret, "write"), home / "persist-1",
                            [{"location": str(tmp_path / "loc"), "sealing": sealing}], processors=NO_PROCESSORS,
                            worker={"ping_interval": "60s"})    # Go-style: the old reader took it too
        w = WorkerService(parse_worker_config(raw), tmp_path / "parents")
        workers.append(w)
        w.start()
        return w
    yield start, tmp_path / "loc"
    for w in workers:
        w.stop(timeout=10)
    mgr.stop()


def test_plan_switch_runs_in_a_running_worker(live):
    """A live worker against a live manager: an idle sealer thread becomes an unseal thread when
    config.toml says so (without waiting for its poll), and a sealer again when it is removed."""
    start, loc = live
    worker = start({"allowed_miners": [4242], "rpc_polling_interval": "60s"})    # no sector for it: idle
    _until(lambda: worker.threads[0].status == "Waiting", "the sealer idles")
    (loc / "config.toml").write_text('plan = "unseal"\n')
    _until(lambda: worker.threads[0].plan == "unseal" and worker.threads[0].status == "Waiting",
           "the thread switches to unseal")
    assert type(worker.threads[0]).__name__ == "UnsealThread"
    assert worker.threads[0].summary()["plan"] == "unseal"          # what `damocles worker list` shows
    (loc / "config.toml").unlink()
    _until(lambda: worker.threads[0].plan == "sealer", "the thread switches back")


def test_a_sector_in_flight_finishes_before_the_plan_switches(live):
    start, loc = live
    worker = start({})
    sealer = worker.threads[0]
    _until(lambda: sealer.rec.name is not None, "a sector is allocated", 60)
    name = sealer.rec.name
    (loc / "config.toml").write_text('plan = "unseal"\n')
    _until(lambda: worker.threads[0].plan == "unseal", "the thread switches to unseal after its sector", 240)
    journal = Journal(loc)
    try:
        events = [(r["next"], r["event"]) for r in journal.log(name)]
        assert "Finished" in [nxt for nxt, _ in events], events      # the sealer took it to the end
        assert events[-1] == (None, "Finish")                          # cleared as finished, then the switch
        assert journal.current() is None
    finally:
        journal.close()


def test_the_journal_keeps_the_plan_that_started_a_sector(tmp_path):
    from appliance.worker.plan import Event
    t = _thread(tmp_path)
    t.ctx.worker_name = "w"
    t._report = lambda *a, **k: None             # no manager here: the transition is what is looked at
    t.journal = Journal(tmp_path)
    try:
        t._transition(Event("Allocate", {"name": "s-t01000-1", "miner": 1000, "number": 1, "proof": 0}))
        assert t.rec.plan == "sealer" and t.journal.current()["plan"] == "sealer"
        t.plan = "rebuild"                       # a later turn keeps the sector's own plan
        t._transition(Event("AcquireDeals", {}))
        assert t.journal.current()["plan"] == "sealer"
    finally:
        t.journal.close()


def _until(fn, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not fn():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        time.sleep(0.05)
