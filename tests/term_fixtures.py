"""A devnet with proven 2KiB sectors and a manager's state, committer and terminator over it, for
the termination, removal and resend tests. Proofs are Groth16-sized blobs the devnet takes
unverified (trust_external_proofs): these tests are about messages, not proofs."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.core.proof_types import seal_proof
from appliance.core.sector import sector_name
from appliance.manager.commitment import Committer
from appliance.manager.config import parse_config
from appliance.manager.state import ManagerState
from appliance.manager.terminate import Terminator

P2K = seal_proof("StackedDrg2KiBV1_1")
MINER = 1000
SNARK = base64.b64encode(bytes(range(192))).decode()
ZERO_COMM_D = "fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"   # CommD of an empty 2KiB sector (k=6)


@dataclass
class Farm:
    chain: Devnet
    state: ManagerState
    committer: Committer
    terminator: Terminator
    config: object

    def close(self):
        self.state.close()
        self.chain.close()

    def tick(self) -> list[str]:
        return self.committer.tick() + self.terminator.tick()


def config(tmp_path, threshold: int = 2, max_wait: str = "1h0m0s"):
    return parse_config({
        "Common": {"PersistStores": [{"Name": "p1", "Path": str(tmp_path / "p1")}]},
        "Miners": [{"Actor": MINER, "Commitment": {
            "Confidence": 2, "Pre": {"Batch": {"Threshold": 1}}, "Prove": {"Batch": {"Threshold": 1}},
            "Terminate": {"Batch": {"Threshold": threshold, "MaxWait": max_wait, "CheckInterval": "100ms"}}}}]})


def open_farm(tmp_path, threshold: int = 2, max_wait: str = "1h0m0s", now=None) -> Farm:
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0, trust_external_proofs=True), genesis_seed=b"\x07" * 32)
    if not chain.miners():
        chain.create_miner(MINER, P2K.id, proving_period_start=0)
        chain.advance(20)
    state = ManagerState(tmp_path / "manager.db")
    cfg = config(tmp_path, threshold, max_wait)
    kw = {"now": now} if now else {}
    committer = Committer(cfg, state, chain, **kw)
    return Farm(chain, state, committer, Terminator(cfg, state, chain, committer, **kw), cfg)


def onboard(farm: Farm, count: int, files: bool = True) -> list[int]:
    """`count` sectors pre-committed, proven and finalized, their files in store p1."""
    chain, state = farm.chain, farm.state
    numbers = [state.allocate(MINER, P2K.id, 0, None) for _ in range(count)]
    for n in numbers:
        state.update(MINER, n, ticket={"Epoch": chain.head() - 5}, pre_queued_at=0,
                     pre={"CommR": (bytes(31) + bytes([n])).hex(), "CommD": ZERO_COMM_D})
    [pre] = farm.committer.tick()
    chain.advance(chain.policy.message_delay + chain.policy.precommit_challenge_delay)
    assert chain.receipt(pre).ok, chain.receipt(pre)
    for n in numbers:
        state.update(MINER, n, commit_proof=SNARK, proof_queued_at=0)
    [proof] = farm.committer.tick()
    chain.advance(chain.policy.message_delay)
    assert chain.receipt(proof).ok, chain.receipt(proof)
    store = farm.config.persist_stores[0].path
    for n in numbers:
        state.update(MINER, n, finalized=True, state="Finished", persisted="p1")
        if files:
            write_files(store, n)
    return numbers


def write_files(store, number: int) -> None:
    name = sector_name(MINER, number)
    for sub in ("sealed", "unsealed"):
        (store / sub).mkdir(parents=True, exist_ok=True)
        (store / sub / name).write_bytes(bytes([number]) * 64)
    cache = store / "cache" / name
    cache.mkdir(parents=True, exist_ok=True)
    for f in ("p_aux", "t_aux", "sc-02-data-tree-r-last.dat"):
        (cache / f).write_bytes(bytes([number]) * 16)


def tree(store) -> dict[str, bytes]:
    """Every file under the store, by relative path, with its bytes."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def to_mutable(farm: Farm, numbers: list[int]) -> None:
    """Advance the clock until no sector of `numbers` is in the current, next or previous deadline."""
    chain = farm.chain
    locs = {chain.sector_location(MINER, n).deadline for n in numbers}
    for _ in range(chain.policy.wpost_period_deadlines * 2):
        idx = chain.proving_deadline(MINER).index
        if not locs & {idx, (idx + 1) % 48, (idx - 1) % 48}:
            return
        chain.advance(chain.policy.wpost_challenge_window)
    raise AssertionError("no mutable deadline found")
