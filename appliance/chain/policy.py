"""The chain constants the devnet enforces. Defaults are Lotus' 2k devnet and builtin-actors'
policy (builtin-actors' miner policy); every one can be set in the manager's `[Chain]`
config, with the same names."""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..core.units import parse_bytes, parse_duration


_AMOUNTS = ("genesis_miner_balance", "genesis_worker_balance", "epoch_reward", "circulating_supply")


@dataclass(frozen=True)
class ChainPolicy:
    block_time: float = 1.0                        # seconds an epoch lasts; 0 = the clock only moves by hand
    message_delay: int = 1                         # epochs from push to execution
    precommit_challenge_delay: int = 10            # 2k devnet (mainnet 150)
    max_precommit_randomness_lookback: int = 3780  # ticket max age: 2880 + 900
    max_prove_commit_duration: int = 30 * 2880 + 10
    expired_precommit_cleanup_delay: int = 8 * 120   # 8 hours of 30 s epochs
    min_sector_expiration: int = 180 * 2880
    max_sector_expiration_extension: int = 1278 * 2880
    precommit_batch_max: int = 256
    aggregate_min: int = 4
    aggregate_max: int = 819
    chain_finality: int = 900
    wpost_proving_period: int = 2880
    wpost_challenge_window: int = 60
    wpost_period_deadlines: int = 48
    wpost_challenge_lookback: int = 20
    fault_declaration_cutoff: int = 70
    posted_partitions_max: int = 3                 # partitions one SubmitWindowedPoSt may prove (PoStedPartitionsMax)
    # WinningPoSt: the power (bytes) of the rest of the simulated network. A devnet miner with power p
    # is elected in an epoch with probability p / (p + network_power); 16 KiB lets a miner with a few
    # 2KiB sectors win a good share of epochs (4 sectors: 1 epoch in 3).
    network_power: int = 16 << 10
    # Groth16 SNARKs from external processors (a rust-fil-proofs c2, snap_prove, window_post): the
    # devnet cannot verify them; with this on it accepts them unverified (and logs each), else it
    # refuses them saying so. Ours, off by default.
    trust_external_proofs: bool = False
    # Money (docs/devnet.md "Money"; amounts in attoFIL, written in the config as "100 FIL"):
    # genesis funds of each miner's actor and of its worker (= owner) address, and the constants
    # the deposit and pledge formulas stand on (chain/money.py).
    genesis_miner_balance: int = 100 * 10 ** 18
    genesis_worker_balance: int = 10_000 * 10 ** 18
    epoch_reward: int = 25 * 10 ** 18              # block reward of an epoch (mainnet: about 5 blocks of ~5 FIL)
    circulating_supply: int = 600_000_000 * 10 ** 18
    money_network_power: int = 20 << 60            # QA power of the simulated network (mainnet: about 20 EiB)
    block_gas_limit: int = 10_000_000_000          # Lotus build.BlockGasLimit
    block_gas_target: int = 5_000_000_000          # Lotus build.BlockGasTarget

    @classmethod
    def from_config(cls, raw: dict, where: str = "[Chain]") -> tuple["ChainPolicy", list[str]]:
        """Build from config keys, matched without regard to case or underscores (BlockTime,
        block_time, PreCommitChallengeDelay); returns the policy and warnings for unknown keys.
        Raises ValueError naming the key for a bad value."""
        names = {f.name.replace("_", ""): f.name for f in fields(cls)}
        values, warnings = {}, []
        for key, value in raw.items():
            name = names.get(str(key).replace("_", "").lower())
            if name is None:
                warnings.append(f"{where}: unknown key {key!r} ignored")
                continue
            if name == "block_time":
                try:
                    values[name] = parse_duration(value)
                except ValueError as exc:
                    raise ValueError(f"{where}.{key}: {exc}") from None
                continue
            if name == "trust_external_proofs":
                if not isinstance(value, bool):
                    raise ValueError(f"{where}.{key}: {value!r} is not true or false")
                values[name] = value
                continue
            if name in _AMOUNTS:
                from .money import parse_fil
                values[name] = parse_fil(value, f"{where}.{key}")
                continue
            if name in ("network_power", "money_network_power") and isinstance(value, str):
                try:
                    values[name] = parse_bytes(value)
                except ValueError as exc:
                    raise ValueError(f"{where}.{key}: {exc}") from None
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{where}.{key}: {value!r} is not a non-negative integer")
            values[name] = value
        policy = cls(**values)
        if policy.aggregate_min > policy.aggregate_max:
            raise ValueError(f"{where}: AggregateMin {policy.aggregate_min} is above AggregateMax {policy.aggregate_max}")
        if policy.precommit_batch_max < 1:
            raise ValueError(f"{where}.PrecommitBatchMax must be at least 1")
        if policy.block_gas_target < 1 or policy.block_gas_limit < policy.block_gas_target:
            raise ValueError(f"{where}: BlockGasTarget must be at least 1 and at most BlockGasLimit")
        if policy.money_network_power < 1:
            raise ValueError(f"{where}.MoneyNetworkPower must be at least 1 byte")
        if policy.posted_partitions_max < 1:
            raise ValueError(f"{where}.PostedPartitionsMax must be at least 1")
        if policy.wpost_challenge_window < 1 or policy.wpost_period_deadlines < 1:
            raise ValueError(f"{where}: WpostChallengeWindow and WpostPeriodDeadlines must be at least 1")
        if policy.wpost_proving_period != policy.wpost_period_deadlines * policy.wpost_challenge_window:
            raise ValueError(f"{where}: WpostProvingPeriod {policy.wpost_proving_period} must equal WpostPeriodDeadlines "
                             f"{policy.wpost_period_deadlines} x WpostChallengeWindow {policy.wpost_challenge_window}")
        return policy, warnings

    def seed_epoch(self, precommit_epoch: int) -> int:
        return precommit_epoch + self.precommit_challenge_delay

    def prove_commit_deadline(self, precommit_epoch: int) -> int:
        return precommit_epoch + self.max_prove_commit_duration
