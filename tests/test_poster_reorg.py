"""The poster through a reorg (Devnet.reorg): a WindowPoSt that landed is taken back, with its
chain commit epoch re-made and the message dropped, while its deadline is open; the poster waits
for it again, the outbox resends it at its nonce, the chain refuses it (its ChainCommitRand is
the lost fork's), and the round is proven and submitted again within the deadline: the deadline
ends proven, no penalty."""

from .test_poster import _service, next_open, settle


def step(svc):
    svc.devnet.advance(1)
    svc.committer.tick()
    settle(svc)


def test_a_windowpost_reorged_out_is_submitted_again_within_its_deadline(tmp_path):
    svc, _ = _service(tmp_path, in_process_chain=False)
    chain = svc.devnet         # the devnet's own records; the manager reads it through its API (svc.chain)
    try:
        d = min(i for i in range(48) if chain.deadline_partitions(1000, i))
        open_ = next_open(svc, d)
        chain.advance(open_ - 20 - chain.head())
        while not any(r.get("state") == "landed" and r["Deadline"] == d for r in svc.poster.rounds(1000)):
            assert chain.head() < open_ + 30, "the WindowPoSt did not land"
            step(svc)
        [first] = [r for r in svc.poster.rounds(1000) if r["Deadline"] == d and r.get("state") == "landed"]
        # the round names its message by the CID the devnet's API gave it, the devnet's records by its own id
        sent = next(m for m in chain.messages(1000) if m["id"] == svc.devnet_api.devnet_message_id(first["message"]))
        fork_point = sent["params"]["ChainCommitEpoch"] - 1
        out = svc.devnet_api.reorg(chain.head() - fork_point, drop=True)      # Venus.DevnetReorg's
        assert out["dropped"] == [first["message"]] and not chain.deadline_partitions(1000, d)[0].proven
        while chain.head() < open_ + 61:
            step(svc)
        posts = [m for m in chain.messages(1000) if m["method"] == "SubmitWindowedPoSt" and m["params"]["Deadline"] == d]
        assert [m["exit_code"] for m in posts][-1] == 0 and sum(m["exit_code"] == 0 for m in posts) == 1, posts
        record = [r for r in chain.deadline_records(1000) if r["index"] == d][-1]
        assert record["partitions_proven"] == record["partitions"] and chain.penalties(1000) == []
    finally:
        svc.poster.close()
        svc.close()
