"""The manager's ext-prover (`damocles manager run --ext-prover`, ext-prover.cfg): Damocles'
commented default loads as empty, a filled one as written (keys without case), bad entries name
the file and key; an in-process manager whose [[WdPost]] entry is our `damocles processor
window_post` started as a separate program proves a deadline that lands on the devnet, and a
[[WinPost]] entry produces a block's WinningPoSt. ext-prover.cfg's shape and defaults follow
Damocles 4235a89 damocles-manager/modules/config_processor.go and pkg/extproc/config.go."""

import json
import shlex
import sys

import pytest

from appliance.core.extproc import ProcessorError
from appliance.manager import ext_prover
from appliance.manager.ext_prover import ExtProverConfigError, load_config
from appliance.manager.service import init_home

from .test_poster import _service, poster_manager, run_to

pytestmark = pytest.mark.timeout(900)


def _processor_toml(stage: str, log) -> str:
    """An entry running our `processor <stage>` as a separate program, its request lines copied
    to `log` on their way in."""
    cmd = f"tee -a {shlex.quote(str(log))} | exec {shlex.join([sys.executable, '-m', 'appliance', 'processor', stage])}"
    return f'Bin = "/bin/sh"\nArgs = ["-c", {json.dumps(cmd)}]\nReadyTimeoutSecs = 30\n'


# ---------------------------------------------------------------------------------- config

def test_init_writes_damocles_commented_default_which_loads_empty(tmp_path):
    home = tmp_path / "m"
    init_home(home, poster_manager())
    text = (home / "ext-prover.cfg").read_text()
    assert text.startswith("# Default config:\n#[[WdPost]]\n#Bin = \"/path/to/custom/bin\"")
    assert "#[[WinPost]]" in text and all(line.startswith("#") for line in text.splitlines())
    cfg = load_config(home)
    assert cfg.wdpost == [] and cfg.winpost == []


def test_a_filled_config_loads_keys_without_case_and_damocles_defaults(tmp_path):
    (tmp_path / "ext-prover.cfg").write_text(
        '[[WdPost]]\nBin = "/opt/prover"\nArgs = ["a", "b"]\nConcurrent = 2\nWeight = 3\nReadyTimeoutSecs = 9\n'
        '[WdPost.Envs]\nCUDA_VISIBLE_DEVICES = "0"\n\n[[wdpost]]\n[wdpost.envs]\nTMPDIR = "/tmp/x"\n\n'
        '[[WINPOST]]\nbin = "/opt/win"\nconcurrent = 4\n')
    cfg = load_config(tmp_path)
    first, second = cfg.wdpost
    assert (first.bin, first.args, first.concurrent, first.weight, first.ready_timeout_secs, first.envs) == \
        ("/opt/prover", ["a", "b"], 2, 3, 9, {"CUDA_VISIBLE_DEVICES": "0"})
    # Damocles' defaults (pkg/extproc/config.go): Concurrent 1, Weight 1, ReadyTimeoutSecs 5, no Bin
    assert (second.bin, second.args, second.concurrent, second.weight, second.ready_timeout_secs, second.envs) == \
        (None, [], 1, 1, 5, {"TMPDIR": "/tmp/x"})
    (win,) = cfg.winpost
    assert (win.bin, win.concurrent, win.weight) == ("/opt/win", 4, 1)


@pytest.mark.parametrize("text, names", [
    ('[[WdPost]]\nConcurrent = -1\n', ["[[WdPost]] #0", "Concurrent", "-1"]),
    ('[[WdPost]]\nBin = 5\n', ["[[WdPost]] #0", "Bin"]),
    ('[[WinPost]]\n[[WinPost]]\nArgs = "x"\n', ["[[WinPost]] #1", "Args"]),
    ('[[WdPost]]\n[WdPost.Envs]\nA = 1\n', ["[[WdPost]] #0", "Envs"]),
    ('WdPost = 3\n', ["WdPost", "array of tables"]),
    ('[[WdPost]\n', ["ext-prover.cfg"]),
])
def test_bad_entries_name_the_file_and_key(tmp_path, text, names):
    (tmp_path / "ext-prover.cfg").write_text(text)
    with pytest.raises(ExtProverConfigError) as err:
        load_config(tmp_path)
    assert str(tmp_path / "ext-prover.cfg") in str(err.value)
    for n in names:
        assert n in str(err.value), err.value


def test_a_missing_config_or_a_processor_that_never_gets_ready_refuses_the_start(tmp_path):
    with pytest.raises(ExtProverConfigError, match="ext-prover.cfg not found"):
        load_config(tmp_path)
    (tmp_path / "ext-prover.cfg").write_text('[[WdPost]]\nBin = "/bin/sh"\nArgs = ["-c", "echo hello; sleep 30"]\n')
    with pytest.raises(ProcessorError, match=r"\[\[WdPost\]\] #0.*'hello' as its first line"):
        ext_prover.ExtProver(load_config(tmp_path), tmp_path)


def test_weight_picks_among_free_processors(tmp_path):
    (tmp_path / "ext-prover.cfg").write_text(
        '[[WdPost]]\nWeight = 1\n' + _processor_toml("window_post", tmp_path / "a.log") +
        '[[WdPost]]\nWeight = 9\n' + _processor_toml("window_post", tmp_path / "b.log"))
    ep = ext_prover.ExtProver(load_config(tmp_path), tmp_path)
    try:
        picks = [ep._pick("window_post") for _ in range(400)]
        heavy = ep._pools["window_post"][1][1]
        assert 320 < sum(p is heavy for p in picks) < 395      # 9 in 10, as Damocles' weighted random choice
        heavy.in_flight = heavy.concurrent                       # busy: only the free one is picked
        assert all(ep._pick("window_post") is not heavy for _ in range(50))
    finally:
        ep.close()


# ----------------------------------------------------------------------- the manager proving

def _ext_service(tmp_path, ext_cfg: str, winning=False):
    """tests/test_poster.py's hand-moved devnet with 4 sealed 2KiB sectors, the manager started
    with --ext-prover and `ext_cfg` as its ext-prover.cfg."""
    return _service(tmp_path, winning, ext_cfg=ext_cfg)[0]


def _close(svc):
    svc.poster.close()
    svc.ext_prover.close()
    svc.close()


def test_a_deadline_proven_by_the_wdpost_processor_lands(tmp_path, monkeypatch):
    log = tmp_path / "wdpost.log"
    svc = _ext_service(tmp_path, "[[WdPost]]\n" + _processor_toml("window_post", log))
    in_process = []
    monkeypatch.setattr("appliance.manager.poster.generate_window_post", lambda *a: in_process.append(a))
    try:
        chain = svc.devnet
        used = sorted(d for d in range(48) if chain.deadline_partitions(1000, d))
        run_to(svc, chain.head() + 2880 + 60)
        records = chain.deadline_records(1000)
        assert len(records) >= len(used)
        assert all(r["partitions_proven"] == r["partitions"] and r["sectors_faulty_new"] == 0 for r in records), records
        assert chain.penalties(1000) == [] and chain.miner_power(1000).active_sectors == 4
        assert in_process == []                      # every proof came from the processor
        tasks = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(tasks) >= len(used)
        t = tasks[0]["task"]     # vc-processors WindowPoSt (builtin/tasks.rs): miner_id, proof_type, replicas, seed
        assert set(t) == {"miner_id", "proof_type", "replicas", "seed"}
        assert t["miner_id"] == 1000 and t["proof_type"] == "StackedDrgWindow2KiBV1_2" and len(t["seed"]) == 32
        assert {r["sector_id"] for x in tasks for r in x["task"]["replicas"]} == {1, 2, 3, 4}
        assert all(set(r) == {"sector_id", "comm_r", "cache_dir", "sealed_file"} for r in t["replicas"])
        assert sum(r.get("state") == "landed" for r in svc.poster.rounds(1000)) == len(records)
    finally:
        _close(svc)


def test_a_failing_wdpost_processor_fails_the_attempt_with_its_reason(tmp_path, monkeypatch):
    svc = _ext_service(tmp_path, "[[WdPost]]\n" + _processor_toml("window_post", tmp_path / "wd.log"))
    try:
        def refuse(stage, task):
            raise ProcessorError("processor says no")
        monkeypatch.setattr(svc.ext_prover, "prove", refuse)
        chain = svc.devnet
        used = sorted(d for d in range(48) if chain.deadline_partitions(1000, d))
        dl = chain.proving_deadline(1000)
        run_to(svc, dl.period_start + 2880 + used[0] * 60 + 30)
        r = [x for x in svc.poster.rounds(1000) if x["Deadline"] == used[0]][-1]
        assert "processor says no" in r["error"] and r["attempts"] >= 1
    finally:
        _close(svc)


def test_a_block_won_with_the_winpost_processor(tmp_path, monkeypatch):
    log = tmp_path / "winpost.log"
    svc = _ext_service(tmp_path, "[[WinPost]]\n" + _processor_toml("winning_post", log), winning=True)
    monkeypatch.setattr("appliance.manager.poster.generate_winning_post",
                        lambda *a: pytest.fail("proved in-process with a WinPost entry"))
    try:
        chain = svc.devnet
        first = chain.head() + 1
        for _ in range(60):
            chain.advance(1)
            svc.poster.tick()
            if [b for b in chain.blocks(1000) if b["epoch"] >= first]:
                break
        blocks = [b for b in chain.blocks(1000) if b["epoch"] >= first]
        assert blocks and all(b["won"] for b in blocks), blocks
        tasks = [json.loads(line)["task"] for line in log.read_text().splitlines()]
        assert len(tasks) == len(blocks)
        assert tasks[0]["proof_type"] == "StackedDrgWinning2KiBV1" and len(tasks[0]["replicas"]) == 1
    finally:
        _close(svc)


def test_manager_run_with_a_bad_ext_prover_cfg_exits_2_naming_it(tmp_path, capsys):
    from appliance import cli
    home = tmp_path / "m"
    init_home(home, poster_manager())
    (home / "ext-prover.cfg").write_text('[[WinPost]]\nWeight = "heavy"\n')
    assert cli.main(["manager", "run", "--home", str(home), "--ext-prover"]) == 2
    err = capsys.readouterr().err
    assert f"{home / 'ext-prover.cfg'}: [[WinPost]] #0: Weight" in err, err


TASK = {"miner_id": 1000, "proof_type": "StackedDrgWindow2KiBV1_2", "seed": [0] * 32,
        "replicas": [{"sector_id": 1, "comm_r": [1] * 32, "cache_dir": "/c", "sealed_file": "/s"},
                     {"sector_id": 2, "comm_r": [2] * 32, "cache_dir": "/c2", "sealed_file": "/s2"}]}


@pytest.mark.parametrize("out, why", [
    ([], "not an object"),
    ({"proofs": "AAAA"}, "output.proofs: 'AAAA' is not an array"),
    ({"proofs": ["not base64!"]}, r"output.proofs\[0\]: not a base64 string"),
    ({"proofs": [[1, 2]]}, r"output.proofs\[0\]: not a base64 string"),
    ({"proofs": ["AAAA"], "faults": [7]}, r"output.faults\[0\]: 7 is not a sector of the task"),
    ({"proofs": [], "faults": []}, "output.proofs: empty"),
])
def test_a_malformed_window_post_answer_is_refused_naming_the_field(out, why):
    with pytest.raises(ProcessorError, match=why):
        ext_prover.read_proofs(out, "window_post", TASK)


def test_a_window_post_answer_reads_as_proof_bytes_and_faults():
    assert ext_prover.read_proofs({"proofs": ["AAEC"], "faults": [2]}, "window_post", TASK) == ([b"\0\1\2"], [2])


def test_an_ext_prover_cfg_without_entries_proves_in_process_with_a_logged_error(tmp_path, caplog):
    init_home(tmp_path / "m", poster_manager())
    ep = ext_prover.ExtProver(load_config(tmp_path / "m"), tmp_path / "m")
    assert not ep.has("window_post") and not ep.has("winning_post")
    assert "has no [[WdPost]] entry; window_post is proven in-process" in caplog.text
    assert "has no [[WinPost]] entry; winning_post is proven in-process" in caplog.text


def test_a_winning_proof_that_does_not_verify_is_not_submitted(tmp_path, caplog):
    """A processor answering a proof of ours over the wrong sector data: the poster verifies it
    and submits no block."""
    fake = tmp_path / "fake.py"
    fake.write_text(
        "import base64, json, sys\n"
        "from appliance.proofs.post import POST_MAGIC\n"
        "print('winning_post processor ready', flush=True)\n"
        "for line in sys.stdin:\n"
        "    rid = json.loads(line)['id']\n"
        "    proof = base64.b64encode(POST_MAGIC + bytes(64)).decode()\n"
        "    print(json.dumps({'id': rid, 'err_msg': None, 'output': {'proofs': [proof]}}), flush=True)\n")
    cfg = f'[[WinPost]]\nBin = {json.dumps(sys.executable)}\nArgs = [{json.dumps(str(fake))}]\nReadyTimeoutSecs = 30\n'
    svc = _ext_service(tmp_path, cfg, winning=True)
    try:
        chain = svc.devnet
        first = chain.head() + 1
        for _ in range(40):
            chain.advance(1)
            svc.poster.tick()
        elected = [b for b in chain.blocks(1000) if b["epoch"] >= first]
        assert elected and not any(b["won"] for b in elected), elected      # elected, never submitted
        assert "the ext-prover's WinningPoSt failed" in caplog.text
    finally:
        _close(svc)
