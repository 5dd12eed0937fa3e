"""A manager whose state is behind its chain refuses to start, naming the file, unless told to
rebuild its counters and nonces from the chain; a state with sectors next to a missing or
empty devnet database is refused, not silently given a new chain."""

import base64
import shutil
import subprocess
import time

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.db import DatabaseError
from appliance.manager.guard import StateBehindChain, open_stores
from appliance.manager.state import ManagerState

from .conftest import ROOT, damocles_cmd
from .manager_driver import ManagerProc, drive_sectors, precommit_sectors, prove_sectors
from .pg_cluster import sqlite_only

pytestmark = pytest.mark.timeout(300)
MANUAL = ChainPolicy(block_time=0)
MINER = 1000


def _home_with_history(home):
    """A state that allocated 1..5 and journalled messages 0..2, and a chain that saw them."""
    home.mkdir(parents=True, exist_ok=True)
    state, chain, _ = open_stores(home, MANUAL, [MINER], in_process=True)
    chain.create_miner(MINER, 0)
    for _ in range(5):
        state.allocate(MINER, 0, 1, None)
    for nonce in range(3):
        assert state.enqueue_message(MINER, "pre", "Nothing", {"n": nonce}, [nonce + 1]) == nonce
        state.record_sent(MINER, nonce, chain.push_message(MINER, "Nothing", {"n": nonce}, nonce=nonce))
    with chain._tx():
        chain.allocate(MINER, 5)          # as a PreCommit of number 5 would
    state.close()
    chain.close()


def test_a_deleted_state_is_refused_and_rebuilt_from_the_chain_on_request(tmp_path):
    _home_with_history(tmp_path)
    (tmp_path / "manager.db").unlink()
    with pytest.raises(StateBehindChain) as exc:
        open_stores(tmp_path, MANUAL, [MINER], in_process=True)
    msg = str(exc.value)
    assert str(tmp_path / "manager.db") in msg and "s-t01000-5" in msg and "nonces up to 2" in msg
    assert "--rebuild-from-chain" in msg
    state, chain, _ = open_stores(tmp_path, MANUAL, [MINER], in_process=True, rebuild=True)
    assert state.allocate(MINER, 0, 1, None) == 6                      # no number reused
    assert state.enqueue_message(MINER, "pre", "Nothing", {"n": 9}, [6]) == 3   # no nonce reused
    state.close()
    chain.close()
    state, chain, _ = open_stores(tmp_path, MANUAL, [MINER], in_process=True)               # and it starts plainly from now on
    state.close()
    chain.close()


def test_an_older_copy_is_refused_and_its_messages_the_chain_took_are_recorded_not_resent(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    state, chain, _ = open_stores(home, MANUAL, [MINER], in_process=True)
    chain.create_miner(MINER, 0)
    for _ in range(2):
        state.allocate(MINER, 0, 1, None)
    state.enqueue_message(MINER, "pre", "Nothing", {"n": 0}, [1])       # journalled, not yet sent
    state.close()
    shutil.copy(home / "manager.db", tmp_path / "old.db")              # closed: no -wal left
    state = ManagerState(home / "manager.db")
    state.record_sent(MINER, 0, chain.push_message(MINER, "Nothing", {"n": 0}, nonce=0))
    state.allocate(MINER, 0, 1, None)
    state.enqueue_message(MINER, "pre", "Nothing", {"n": 1}, [3])
    state.record_sent(MINER, 1, chain.push_message(MINER, "Nothing", {"n": 1}, nonce=1))
    with chain._tx():
        chain.allocate(MINER, 3)
    state.close()
    chain.close()
    shutil.copy(tmp_path / "old.db", home / "manager.db")               # restored from the older copy
    with pytest.raises(StateBehindChain, match="next sector number is 3 but the chain has already seen s-t01000-3"):
        open_stores(home, MANUAL, [MINER], in_process=True)
    state, chain, _ = open_stores(home, MANUAL, [MINER], in_process=True, rebuild=True)
    assert state.allocate(MINER, 0, 1, None) == 4
    assert state.unsent() == []                           # the chain took it at its nonce: recorded, not resent
    assert (state.sector(MINER, 1)["pre_nonce"], state.sector(MINER, 1)["pre_msg"]) == (0, chain.message_at_nonce(MINER, 0)["id"])
    state.close()
    chain.close()


def test_an_unsent_message_whose_nonce_the_chain_gave_another_moves_to_a_fresh_nonce(tmp_path):
    home = tmp_path / "home"
    state, chain, _ = open_stores(home, MANUAL, [MINER], in_process=True)
    chain.create_miner(MINER, 0)
    state.allocate(MINER, 0, 1, None)
    state.enqueue_message(MINER, "pre", "Nothing", {"n": 0}, [1])       # journalled, not yet sent
    chain.push_message(MINER, "Nothing", {"n": "another"}, nonce=0)     # the chain took other messages there
    chain.push_message(MINER, "Nothing", {"n": "and another"}, nonce=1)
    state.close()
    chain.close()
    with pytest.raises(StateBehindChain, match="nonces up to 1"):
        open_stores(home, MANUAL, [MINER], in_process=True)
    state, chain, _ = open_stores(home, MANUAL, [MINER], in_process=True, rebuild=True)
    try:
        assert [(m["nonce"], m["params"]) for m in state.unsent()] == [(2, {"n": 0})]    # not 0: the chain used it
        assert state.sector(MINER, 1)["pre_nonce"] == 2
    finally:
        state.close()
        chain.close()


def test_a_state_with_sectors_next_to_a_missing_or_empty_chain_is_refused(tmp_path):
    _home_with_history(tmp_path)
    (tmp_path / "devnet.db").rename(tmp_path / "devnet.db.elsewhere")
    with pytest.raises(DatabaseError, match="devnet chain database .*devnet.db is missing or empty"):
        open_stores(tmp_path, MANUAL, [MINER], in_process=True)
    assert not (tmp_path / "devnet.db").exists()          # no new chain was started
    (tmp_path / "devnet.db").write_bytes(b"")
    with pytest.raises(DatabaseError, match="missing or empty"):
        open_stores(tmp_path, MANUAL, [MINER], in_process=True)
    assert (tmp_path / "devnet.db").read_bytes() == b""


def test_a_fresh_home_creates_its_chain(tmp_path):
    state, chain, _ = open_stores(tmp_path, MANUAL, [MINER], in_process=True)
    assert chain.head() == 0 and not state.has_history()
    state.close()
    chain.close()


def _run(home, *extra, timeout=60):
    return subprocess.run(damocles_cmd("manager", "run", "--home", str(home), *extra), capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def _start_rebuilding(m, log):
    """`manager run --rebuild-from-chain` as m's process (ManagerProc starts without options)."""
    from appliance.rpc.auth import issue_token, load_or_create_secret
    from appliance.rpc.client import RPCClient
    m.proc = subprocess.Popen(damocles_cmd("manager", "run", "--home", str(m.home), "--rebuild-from-chain"),
                              stdout=subprocess.PIPE, stderr=open(log, "w"), text=True, cwd=ROOT)
    line = m.proc.stdout.readline()
    assert line.startswith("listening on "), line
    secret = load_or_create_secret(m.home / "secret")
    m.rpc = RPCClient(line.split()[-1], issue_token(secret, "write"), timeout=30)
    m.admin = RPCClient(line.split()[-1], issue_token(secret, "admin"), timeout=30)


def _deadline_of(m, number):
    return next(d for d in range(48) if any(number in p["Sectors"] for p in m.admin_call("Venus.ProvingDeadline", MINER, d)["Partitions"]))


def _prove_deadline(m, d, timeout=120.0):
    """Advance the devnet through deadline d's next occurrence until the manager's WindowPoSt for
    it lands or fails (the manager proves it itself: no dedicated prover); returns the round."""
    info = m.admin_call("Venus.ProvingInfo", MINER)
    open_ = info["PeriodStart"] + d * 60
    open_ = open_ if open_ - 25 > info["CurrentEpoch"] else open_ + 2880
    m.admin_call("Venus.DevnetAdvance", open_ - 25 - m.admin_call("Venus.DevnetHead")["Epoch"])   # before its challenge
    deadline, r = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        r = next((r for r in m.admin_call("Venus.ProvingDeadline", MINER, d)["Rounds"] if r["PeriodStart"] == open_ - d * 60), {})
        if r.get("state") in ("landed", "failed"):
            return r
        # the clock moves only as far as the poster waits on it: before the round exists, to the
        # window's opening (past the challenge and the manager's confidence); with the proof made,
        # to SubmitConfidence (4, the default) epochs past it; with its message pushed, an epoch at a
        # time until it is included, never past the window (it closes at open_ + 60). Moved on
        # blindly (a loaded host, a slow poster pass), it ran past the whole deadline before the
        # poster started the round or submitted its proof.
        limit = {"proved": open_ + 4, "submitted": open_ + 58, "empty": open_ + 58}.get(r.get("state"), open_)
        if m.admin_call("Venus.DevnetHead")["Epoch"] < limit:
            m.admin_call("Venus.DevnetAdvance", 1)
        time.sleep(0.05)    # polling a live manager; bounded by the deadline
    raise AssertionError(f"deadline {d}'s WindowPoSt did not land within {timeout}s; its round: {r}, "
                         f"the head: {m.admin_call('Venus.DevnetHead')}")


@sqlite_only       # its manager.db deleted, zeroed, restored from a backup
def test_manager_run_behind_its_chain_refuses_then_resumes_with_rebuild(tmp_path):
    """The fault run: manager.db deleted, zeroed or restored from an older copy under a chain with
    landed sectors re-allocated their numbers and jammed the outbox on used nonces. With the
    rebuild, the sectors sealed after the backup get their records back from the chain and the
    persist store: those finished are proven, those whose worker still holds them carry on."""
    m = ManagerProc(tmp_path / "manager")
    try:
        drive_sectors(m, 4, tmp_path / "work")            # 4: the ProveCommit batch's threshold
        backup = tmp_path / "old.tar.gz"
        out = subprocess.run(damocles_cmd("manager", "backup", "--home", str(m.home), "--to", str(backup)),
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr
        done = drive_sectors(m, 4, tmp_path / "work1")
        held = precommit_sectors(m, 4, tmp_path / "work3")    # PreCommits landed, still held by their worker
    finally:
        m.stop()
    assert [s["Number"] for s in done] == [5, 6, 7, 8]
    assert [sid["Number"] for sid, _, _ in held] == [9, 10, 11, 12]

    def restore_old():
        out = subprocess.run(damocles_cmd("manager", "restore", "--from", str(backup), "--home", str(m.home),
                                          "--keep-chain", "--force"), capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 0, out.stderr

    restore_old()
    out = _run(m.home)
    assert out.returncode == 2, out
    assert f"manager state {m.home / 'manager.db'} is behind the chain" in out.stderr
    assert "next sector number is 5 but the chain has already seen s-t01000-12" in out.stderr
    assert "Traceback" not in out.stderr
    (m.home / "manager.db").unlink()
    out = _run(m.home)
    assert out.returncode == 2 and "next sector number is 0 but" in out.stderr, out
    (m.home / "manager.db").write_bytes(bytes(4096))              # zeroed: refused, named, kept
    out = _run(m.home)
    assert out.returncode == 2 and str(m.home / "manager.db") in out.stderr and "Traceback" not in out.stderr
    assert (m.home / "manager.db").read_bytes() == bytes(4096)

    restore_old()
    _start_rebuilding(m, tmp_path / "rebuilt.log")
    try:
        listed = {s["ID"]["Number"]: s for s in m.admin_call("Venus.ListSectors", "", 0)}
        assert sorted(listed) == list(range(1, 13))                # nothing lost
        for n in (5, 6, 7, 8):                                     # sealed after the backup: finished, files found
            s = listed[n]
            assert (s["State"], s["Finalized"], s["AbortReason"], s["Persisted"]) == ("Finished", True, "", "persist-1"), s
            assert s["MessageInfo"]["PreCommitCid"] and s["MessageInfo"]["CommitCid"], s
        for n in (9, 10, 11, 12):                                  # PreCommit landed: its worker carries on
            s = listed[n]
            assert (s["State"], s["Finalized"], s["AbortReason"]) == ("PCLanded", False, ""), s
        assert [s["Number"] for s in prove_sectors(m, held)] == [9, 10, 11, 12]
        more = drive_sectors(m, 4, tmp_path / "work2")
        checked = m.admin_call("Venus.ProvingCheck", MINER, None)
        assert sorted(c["Sector"] for c in checked) == list(range(1, 17)) and all(c["Ok"] for c in checked), checked
        proven = _deadline_of(m, 5)
        r = _prove_deadline(m, proven)
        assert r["state"] == "landed", r
        m.admin_call("Venus.DevnetAdvance", r["PeriodStart"] + proven * 60 + 61 - m.admin_call("Venus.DevnetHead")["Epoch"])
        final = {s["ID"]["Number"]: s for s in m.admin_call("Venus.ListSectors", "", 0)}
    finally:
        m.stop()
    assert [s["Number"] for s in more] == [13, 14, 15, 16]         # no number reused, and they landed
    assert all(s["Finalized"] and s["AbortReason"] == "" for s in final.values()), final
    log_text = (tmp_path / "rebuilt.log").read_text()
    assert "rebuilt f01000's counters from the chain" in log_text
    assert "sector s-t01000-5: re-created from the chain as Finished (its files in persist store persist-1)" in log_text
    chain = Devnet(m.home / "devnet.db", MANUAL)
    try:
        assert all(chain.sector(MINER, n) is not None for n in range(1, 17))
        failed = [(x["method"], x["exit_code"], x["error"], x["pushed_epoch"], x["executed_epoch"])
                  for x in chain.messages(MINER) if x["exit_code"] != 0]
        assert failed == []
        precommitted = [s["SectorNumber"] for x in chain.messages(MINER) if x["method"] == "PreCommitSectorBatch2"
                        for s in x["params"]["Sectors"]]
        assert sorted(precommitted) == list(range(1, 17))          # no PreCommit sent twice
        record = [x for x in chain.deadline_records(MINER) if x["index"] == proven and x["period_start"] == r["PeriodStart"]]
        assert record and all(x["partitions_proven"] == x["partitions"] and x["sectors_faulty_new"] == 0 for x in record), record
    finally:
        chain.close()


def test_a_precommit_with_a_deal_is_recreated_with_its_deal_ticket_and_message(tmp_path):
    """A PreCommit carrying a deal landed after the state was lost: the record comes back with its
    ticket, commitments, message and nonce (not sent again), and its deal re-created from the
    chain, tied to it, with the payload size of the piece file in the piece store."""
    from appliance.manager.config import PersistStore
    from appliance.manager.market import Market
    from appliance.proofs.cid import commd_to_cid, commr_to_cid
    from appliance.proofs.commitment import comm_d_from_pieces, commp_file

    pieces = tmp_path / "pieces"
    pieces.mkdir()
    payload = tmp_path / "payload"
    payload.write_bytes(bytes(range(256)) * 3)
    piece, size = commp_file(payload)
    cid = commd_to_cid(piece.commitment)
    (pieces / cid).write_bytes(payload.read_bytes())

    state, chain, _ = open_stores(tmp_path, MANUAL, [MINER], in_process=True)
    chain.create_miner(MINER, 0)
    chain.advance(20)
    deal = chain.publish_deal(MINER, cid, piece.size, 500, 180 * 2880)
    params = {"Sectors": [{"SealProof": 0, "SectorNumber": 7, "SealedCID": {"/": commr_to_cid(bytes(31) + b"\x01")},
                           "SealRandEpoch": 15, "DealIDs": [deal], "Expiration": 20 + 181 * 2880,
                           "UnsealedCid": {"/": commd_to_cid(comm_d_from_pieces([piece], 2048))}}]}
    msg = chain.push_message(MINER, "PreCommitSectorBatch2", params, nonce=0)
    chain.advance(3)
    assert chain.receipt(msg).ok, chain.receipt(msg)
    state.close()
    chain.close()
    (tmp_path / "manager.db").unlink()                             # the state is lost

    state, chain, _ = open_stores(tmp_path, MANUAL, [MINER], in_process=True, rebuild=True, persist_stores=[PersistStore("p", tmp_path / "p")],
                               piece_stores=[PersistStore("pieces-1", pieces)])
    try:
        rec = state.sector(MINER, 7)
        assert rec["state"] == "PCLanded" and not rec.get("finalized") and "persisted" not in rec
        assert (rec["pre_msg"], rec["pre_nonce"], rec["deals"]) == (msg, 0, [deal])
        assert rec["ticket"]["Epoch"] == 15
        assert rec["ticket"]["Ticket"] == base64.b64encode(chain.seal_randomness(MINER, 15)).decode()
        assert rec["pre"]["CommD"] == comm_d_from_pieces([piece], 2048).hex()
        market = Market(type("Config", (), {"piece_stores": []})(), state, chain)
        assert [d["PayloadSize"] for d in market.deals(MINER) if d["Sector"] == 7] == [size]
        assert market.pieces(MINER, 7) == [piece]                  # a resubmitted PreCommit's CommD checks out
        assert state.history(MINER, 7)[0]["event"] == "RecoveredFromChain"
        assert state.unsent() == []                                # nothing to send again
    finally:
        state.close()
        chain.close()


def _cc_precommit(number: int, head: int) -> dict:
    from appliance.proofs.cid import commd_to_cid, commr_to_cid
    from appliance.proofs.commitment import comm_d_from_pieces
    return {"Sectors": [{"SealProof": 0, "SectorNumber": number, "SealedCID": {"/": commr_to_cid(bytes(31) + bytes([number]))},
                         "SealRandEpoch": head - 2, "DealIDs": [], "Expiration": head + 181 * 2880,
                         "UnsealedCid": {"/": commd_to_cid(comm_d_from_pieces([], 2048))}}]}


def test_records_older_than_the_chain_take_its_messages_instead_of_sending_them_again(tmp_path):
    """The copy was taken after sector 1's PreCommit was journalled but before it was recorded
    sent, and before sector 2's was journalled at all; both landed since. Sending either again
    fails on chain ("already allocated") and aborts the sector."""
    home = tmp_path / "home"
    state, chain, _ = open_stores(home, MANUAL, [MINER], in_process=True)
    chain.create_miner(MINER, 0)
    chain.advance(20)
    head = chain.head()
    for n in (1, 2):
        assert state.allocate(MINER, 0, 1, None) == n
        state.update(MINER, n, pre={"CommR": "00", "CommD": "00"}, state="PCSubmitted")
    assert state.enqueue_message(MINER, "pre", "PreCommitSectorBatch2", _cc_precommit(1, head), [1]) == 0
    state.close()
    shutil.copy(home / "manager.db", tmp_path / "old.db")
    state = ManagerState(home / "manager.db")
    first = chain.push_message(MINER, "PreCommitSectorBatch2", _cc_precommit(1, head), nonce=0)
    state.record_sent(MINER, 0, first)
    assert state.enqueue_message(MINER, "pre", "PreCommitSectorBatch2", _cc_precommit(2, head), [2]) == 1
    second = chain.push_message(MINER, "PreCommitSectorBatch2", _cc_precommit(2, head), nonce=1)
    state.record_sent(MINER, 1, second)
    chain.advance(3)
    assert chain.receipt(first).ok and chain.receipt(second).ok
    state.close()
    chain.close()
    shutil.copy(tmp_path / "old.db", home / "manager.db")

    state, chain, _ = open_stores(home, MANUAL, [MINER], in_process=True, rebuild=True)
    try:
        assert state.unsent() == []                                   # adopted, not moved to a new nonce
        assert (state.sector(MINER, 1)["pre_msg"], state.sector(MINER, 1)["pre_nonce"]) == (first, 0)
        assert (state.sector(MINER, 2)["pre_msg"], state.sector(MINER, 2)["pre_nonce"]) == (second, 1)
        assert state.enqueue_message(MINER, "proof", "Nothing", {}, []) == 2
    finally:
        state.close()
        chain.close()
