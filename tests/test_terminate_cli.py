"""The manager service end to end for a sector's end: `util sealer sectors terminate | terminate
query | remove | finalize | resend-pre | resend-prove` against a running manager (its terminate
loop, its committer, the embedded devnet through its Filecoin API), the clock moved by hand."""

import json
import time
import urllib.request

import pytest

from appliance import cli
from appliance.chain.types import SectorOnChain
from appliance.core.sector import sector_name
from appliance.manager.service import ManagerService, init_home
from appliance.proofs.cid import commd_to_cid, commr_to_cid
from appliance.rpc.auth import issue_token

from .configs import manager_toml
from .term_fixtures import tree, write_files

MINER = 1000


@pytest.fixture
def svc(tmp_path):
    home = tmp_path / "m"
    init_home(home, manager_toml(None, block_time="0s", miner={
        "SealProof": "StackedDrg2KiBV1_1", "PoSt": {"Enabled": False},
        "Commitment": {"Terminate": {"Batch": {"Threshold": 2, "MaxWait": "1h0m0s", "CheckInterval": "100ms"}}}}))
    s = ManagerService(home)
    s.url = "http://%s:%d" % s.start("127.0.0.1:0")
    store = s.config.persist_stores[0].path
    for n in (1, 2, 3):      # proven on chain, finalized here, files in persist-1
        assert s.state.allocate(MINER, 5, 1, None) == n
        s.state.update(MINER, n, state="Finished", finalized=True, persisted="persist-1")
        write_files(store, n)
        with s.devnet._tx():
            s.devnet.put_sector(SectorOnChain(MINER, n, 5, commr_to_cid(bytes([n]) * 32), commd_to_cid(bytes(32)), 1, 10**6))
            s.devnet.assign_deadlines(MINER, [n])
    # the actor refuses to terminate in the current, next or previous deadline (the terminate loop
    # waits): the proving period's offset comes from the devnet's random genesis, so move the
    # stopped clock a deadline at a time until the sectors' deadlines are none of those
    n_deadlines = s.devnet.policy.wpost_period_deadlines
    theirs = {s.devnet.sector_location(MINER, n).deadline for n in (1, 2, 3)}
    for _ in range(n_deadlines):
        now = s.devnet.proving_deadline(MINER).index
        if not theirs & {now, (now + 1) % n_deadlines, (now - 1) % n_deadlines}:
            break
        s.devnet.advance(s.devnet.policy.wpost_challenge_window)
    yield s
    s.stop()


def run(svc, capsys, *words) -> tuple[int, str, str]:
    rc = cli.main(["util", "sealer", "sectors", *words, "--api", svc.url,
                   "--token", issue_token(svc.secret, "admin")])
    out = capsys.readouterr()
    return rc, out.out, out.err


def page(svc) -> list[dict]:
    """The status page's terminations, as its overview sends them."""
    req = urllib.request.Request(svc.url + "/ui/api/overview",
                                 headers={"Authorization": f"Bearer {issue_token(svc.secret, 'read')}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())["Terminations"]


def wait_for(what, fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_terminate_query_remove_finalize_resend_through_the_cli(svc, capsys):
    store = svc.config.persist_stores[0].path
    rc, out, err = run(svc, capsys, "terminate", "--actor", "1000", "1")
    assert rc == 2 and "pass --really-do-it to confirm this action" in err
    assert run(svc, capsys, "terminate", "--actor", "1000", "1", "--really-do-it") == (0, "terminate accepted\n", "")
    rc, out, _ = run(svc, capsys, "terminate", "query", "1000", "1")
    assert rc == 0 and out.startswith("msg: null, added height: ")
    assert run(svc, capsys, "terminate", "1000", "1", "--really-do-it")[:2] == (1, "terminate failed: duplicate submit\n")
    assert run(svc, capsys, "terminate", "1000", "2", "--really-do-it")[0] == 0
    # Threshold 2: the loop sends one TerminateSectors for both
    msg = wait_for("the terminate message", lambda: svc.state.sector(MINER, 1).get("terminate_msg"))
    assert svc.state.sector(MINER, 2)["terminate_msg"] == msg
    rc, out, err = run(svc, capsys, "remove", "--actor", "1000", "1", "--really-do-it")
    assert rc == 2 and f"its termination is in flight (message {msg})" in err
    assert sorted((t["Sector"], t["State"], t["Message"]) for t in page(svc)) == [
        ("s-t01000-1", "sent", msg), ("s-t01000-2", "sent", msg)]
    svc.devnet.advance(2)           # lands, then Confidence 1
    info = wait_for("TerminatedAt", lambda: (i := json.loads(run(svc, capsys, "terminate", "query", "1000", "1", "--json")[1]))
                    ["TerminatedAt"] and i)
    assert info["TerminateCid"] == {"/": msg} and info["AddedHeight"] >= 0
    # the loop marks the batch's sectors one after another: wait for sector 2's mark too
    wait_for("TerminatedAt of 2", lambda: json.loads(run(svc, capsys, "terminate", "query", "1000", "2", "--json")[1])
             ["TerminatedAt"])
    rc, out, _ = run(svc, capsys, "terminate", "query", "--actor", "1000", "2")
    assert out == f"msg: {msg}, height: {info['TerminatedAt']}, added height: {info['AddedHeight']}\n"
    rc, _, err = run(svc, capsys, "remove", "1000", "1", "--really-do-it")
    assert rc == 2 and "wait for expiration" in err
    svc.devnet.advance(10)
    before = tree(store)
    assert run(svc, capsys, "remove", "1000", "1", "--really-do-it") == (0, "remove succeed\n", "")
    assert set(tree(store)) == {k for k in before if sector_name(MINER, 1) not in k}
    rows = {t["Sector"]: t for t in page(svc)}
    assert (rows["s-t01000-1"]["State"], rows["s-t01000-1"]["TerminatedAt"], rows["s-t01000-1"]["Removed"]) == (
        "landed", info["TerminatedAt"], True)
    rc, _, err = run(svc, capsys, "remove", "1000", "3", "--really-do-it")
    assert rc == 2 and "is live on chain until epoch" in err and "terminate it first" in err
    svc.state.update(MINER, 3, finalized=None, state="ProofSubmitted")
    assert run(svc, capsys, "finalize", "--miner", "1000", "3", "--really-do-it") == (0, "s-t01000-3 finalized\n", "")
    assert svc.state.sector(MINER, 3)["finalized"] is True
    rc, _, err = run(svc, capsys, "resend-pre", "1000", "3")
    assert rc == 2 and "no pre commit on chain info available" in err
    rc, _, err = run(svc, capsys, "resend-prove", "t01000", "3")
    assert rc == 2 and "no prove commit on chain info available" in err
