"""The devnet's head never decreases: not across a restart with another block time (as
`damocles up --block-time` does on every start), not when the wall clock steps back."""

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.chain.types import ChainError

pytestmark = pytest.mark.timeout(60)


class Clock:
    def __init__(self, t=1_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


def test_head_survives_a_restart_with_a_longer_block_time(tmp_path):
    clock = Clock()
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=1), now=clock)
    clock.t += 78
    assert chain.head() == 78
    chain.close()
    again = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=4.6), now=clock)   # the fault run: 78 -> 17
    assert again.head() == 78
    clock.t += 46                              # ten of the new, longer epochs
    assert again.head() == 88
    again.close()
    clock.t += 10                               # down for 10 s, back with 1 s epochs: counted at 4.6 s each
    third = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=1), now=clock)
    assert third.head() == 90
    clock.t += 5
    assert third.head() == 95
    third.close()


def test_head_survives_set_block_time(tmp_path):
    clock = Clock()
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=1), now=clock)
    clock.t += 40
    assert chain.head() == 40
    chain.set_block_time(30)
    assert chain.head() == 40
    clock.t += 60
    assert chain.head() == 42
    chain.close()


def test_a_wall_clock_step_back_pauses_the_head_instead_of_rewinding_it(tmp_path):
    clock = Clock()
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=1), now=clock)
    clock.t += 67
    assert chain.head() == 67
    clock.t -= 30                               # the fault run: 67 -> 37
    assert chain.head() == 67
    clock.t += 5                                # the chain carries on from where it was
    assert chain.head() == 72
    clock.t -= 1000                             # a step back to before the clock's anchor
    assert chain.head() == 72
    clock.t += 3
    assert chain.head() == 75
    chain.close()
    clock.t -= 50                               # and across a restart
    again = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=1), now=clock)
    assert again.head() == 75
    again.close()


def test_messages_never_execute_at_an_epoch_before_earlier_ones(tmp_path):
    clock = Clock()
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=1, message_delay=1), now=clock)
    chain.create_miner(1000, 0)
    clock.t += 37
    first = chain.push_message(1000, "Nothing", {}, nonce=0)
    clock.t += 2
    chain.close()
    again = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=10, message_delay=1), now=clock)
    second = again.push_message(1000, "Nothing", {}, nonce=1)
    clock.t += 20
    again.head()
    epochs = {m["id"]: m["executed_epoch"] for m in again.messages(1000)}
    assert epochs[first] == 38 and epochs[second] >= 40
    again.close()


def test_a_missing_chain_is_not_silently_created_when_told_not_to(tmp_path):
    with pytest.raises(ChainError, match="missing or empty"):
        Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0), create=False)
    assert not (tmp_path / "devnet.db").exists()
    (tmp_path / "devnet.db").write_bytes(b"")
    with pytest.raises(ChainError, match=str(tmp_path / "devnet.db")):
        Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0), create=False)
    assert (tmp_path / "devnet.db").read_bytes() == b""
