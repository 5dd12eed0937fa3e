"""The manager's config file on disk: the sector-manager.cfg that `damocles manager init` writes,
and `damocles manager init --upgrade`, which turns an earlier version's manager.toml into one."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ..config import ConfigError, load_toml
from .config import CONFIG_NAME, LEGACY_NAME, parse_config

# Damocles' `daemon init` output (every key commented out as `#Key = default`, the table headers
# kept, an empty `#` line before each array table) in its order, with the devnet profile's
# values set; the sections after [[Miners]] are this project's own.
DEVNET_CFG = """# Default config:
# sector-manager.cfg in Damocles' layout, as `damocles-manager daemon init` writes it: a key
# commented out shows Damocles' default (or its example value); the keys set are the devnet
# profile of `damocles manager init` (`damocles up` and the tests), production values beside them.
# [RPC], [Sealing], [Market] and [Chain] at the end are this project's own.
[Common]
#ScanPersistStores = []
[Common.API]
#Gateway = ["/ip4/{api_host}/tcp/{api_port}"]
#Token = "{some token}"
#ChainEventInterval = "1m0s"
#
#[[Common.PieceStores]]
#Name = "{store_name}"
#Path = "{store_path}"
#ReadOnly = false
#Plugin = ""
#PluginName = "s3store"
#[Common.PieceStores.Meta]
#SomeKey = "SomeValue"
#
[[Common.PersistStores]]
Name = "persist-1"
Path = "persist-1"                 # relative paths start from this file's directory
#Strict = false
#ReadOnly = false
#Weight = 0
#AllowMiners = [1, 2]
#DenyMiners = [3, 4]
#Plugin = ""
#PluginName = "s3store"
[Common.PersistStores.Meta]
#SomeKey = "SomeValue"
[Common.DB]
#Driver = "badger"
[Common.DB.Badger]
#BaseDir = ""
[Common.Proving]
#ParallelCheckLimit = 128
#SingleCheckTimeout = "10m0s"
#PartitionCheckTimeout = "20m0s"
[Common.Proving.WorkerProver]
#JobMaxTry = 2
#HeartbeatTimeout = "15s"
#JobLifetime = "25h0m0s"
#
[[Miners]]
Actor = 1000
SealProof = "StackedDrg2KiBV1_1"
# SealProof: the proof type the devnet creates this miner with; a miner the chain already has
# may leave it out (Damocles reads it from the chain), and a value that differs is refused.
[Miners.Sector]
#InitNumber = 0
#MinNumber = 10
#MaxNumber = 1000000
#Enabled = true
#EnableDeals = false
#LifetimeDays = 540
#Verbose = false
[Miners.SnapUp]
#Enabled = false
#Senders = ["f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za"]
#SendFund = true
#GasOverEstimation = 1.2
#GasOverPremium = 0.0
#GasFeeCap = "5 nanoFIL"
#MaxFeeCap = ""
#CleanupCCData = true
#MessageConfidence = 15
#ReleaseConfidence = 30
[Miners.SnapUp.Retry]
#MaxAttempts = 10
#PollInterval = "3m0s"
#APIFailureWait = "3m0s"
#LocalFailureWait = "3m0s"
[Miners.Commitment]
Confidence = 2                     # production: 10
[Miners.Commitment.Pre]
#Senders = ["f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za"]
#SendFund = true
#GasOverEstimation = 1.2
#GasOverPremium = 0.0
#GasFeeCap = "5 nanoFIL"
#MaxFeeCap = ""
[Miners.Commitment.Pre.Batch]
Threshold = 2
MaxWait = "5s"                     # production: "1h0m0s"
CheckInterval = "500ms"            # production: "1m0s"
#GasOverEstimation = 1.2
#GasOverPremium = 0.0
#GasFeeCap = "5 nanoFIL"
#MaxFeeCap = ""
[Miners.Commitment.Prove]
#Senders = ["f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za"]
#SendFund = true
#GasOverEstimation = 1.2
#GasOverPremium = 0.0
#GasFeeCap = "5 nanoFIL"
#MaxFeeCap = ""
[Miners.Commitment.Prove.Batch]
Threshold = 4
MaxWait = "5s"                     # production: "1h0m0s"
CheckInterval = "500ms"            # production: "1m0s"
#GasOverEstimation = 1.2
#GasOverPremium = 0.0
#GasFeeCap = "5 nanoFIL"
#MaxFeeCap = ""
[Miners.Commitment.Terminate]
#Senders = ["f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za"]
#SendFund = true
#GasOverEstimation = 1.2
#GasOverPremium = 0.0
#GasFeeCap = "5 nanoFIL"
#MaxFeeCap = ""
[Miners.Commitment.Terminate.Batch]
#Threshold = 2
#MaxWait = "1h0m0s"
#CheckInterval = "1m0s"
#GasOverEstimation = 1.2
#GasOverPremium = 0.0
#GasFeeCap = "5 nanoFIL"
#MaxFeeCap = ""
[Miners.PoSt]
#Senders = ["f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za"]
#Enabled = true
#StrictCheck = true
#Parallel = false
#GasOverEstimation = 1.2
#GasOverPremium = 0.0
#GasFeeCap = "5 nanoFIL"
#MaxFeeCap = ""
#Confidence = 10
SubmitConfidence = 1               # production: 0 (that is, 4)
ChallengeConfidence = 2            # production: 0 (that is, 10)
#MaxRecoverSectorLimit = 0
#MaxPartitionsPerPoStMessage = 0
#MaxPartitionsPerRecoveryMessage = 0
[Miners.Proof]
Enabled = true                     # WinningPoSt: take part in block production (default false)
[Miners.Sealing]
#SealingEpochDuration = 0
#RequireActivationSuccess = false
#RequireActivationSuccessUpdate = false
#RequireNotificationSuccess = false
#RequireNotificationSuccessUpdate = false
#UseSyntheticPoRep = false
#SealingSectorDeadlineDelayNi = 6
#

[RPC]
Listen = "127.0.0.1:1789"
# AllowNetworks = ["10.0.0.0/8"]   # networks whose workers may call without a token (write)

[Sealing]
SealRandomnessLookback = 5         # production: 900 (ChainFinality); a young devnet has few epochs
InteractivePoRepConfidence = 2     # production: 6

[Chain]
BlockTime = "1s"                   # "0s": the clock moves only by hand (damocles util chain advance)
MessageDelay = 1
# TrustExternalProofs = false      # true: accept Groth16 proofs of external processors unverified
"""

_MIN_NUMBER = re.compile(r"\b(MinNumber\s*=\s*)(\d+)")


def upgrade_legacy(home: Path) -> tuple[Path, Path]:
    """Write `home`'s manager.toml as sector-manager.cfg and move manager.toml aside (the
    backup). The text is kept, comments included; each `MinNumber = N` becomes N - 1, since the
    old MinNumber was the first number handed out and Damocles' is the last one not handed out:
    the numbers handed out stay the same. Returns (the new file, the backup)."""
    home = Path(home)
    old, new = home / LEGACY_NAME, home / CONFIG_NAME
    if not old.exists():
        raise ConfigError(f"--upgrade: {old} not found (nothing to upgrade)")
    if new.exists():
        raise ConfigError(f"--upgrade: {new} already exists; move it away to upgrade {old} again")
    text = old.read_text()
    before = parse_config(load_toml(old), home, legacy=True, name=LEGACY_NAME)

    body = _MIN_NUMBER.sub(lambda m: f"{m.group(1)}{max(int(m.group(2)) - 1, 0)}", text)
    header = (f"# Upgraded from {LEGACY_NAME} by `damocles manager init --upgrade` ({time.strftime('%Y-%m-%d %H:%M:%S')}):\n"
              f"# each MinNumber is one lower, as Damocles' MinNumber is the last number not handed out (in\n"
              f"# {LEGACY_NAME} it was the first one handed out), so the same numbers are handed out.\n")
    tmp = home / f".{CONFIG_NAME}.part"
    tmp.write_text(header + body)
    try:
        after = parse_config(load_toml(tmp), home)
    except Exception:
        tmp.unlink()
        raise
    changed = [m.actor for m, a in zip(before.miners, after.miners) if (m.actor, m.min_number) != (a.actor, a.min_number)]
    if changed or len(before.miners) != len(after.miners):
        tmp.unlink()
        raise ConfigError(f"--upgrade: could not carry MinNumber of miner(s) {changed} over line by line (written "
                          f"inline?); copy {old} to {new} and lower each MinNumber by one by hand")
    backup = home / f"{LEGACY_NAME}.bak"
    if backup.exists():
        backup = home / f"{LEGACY_NAME}.bak-{time.strftime('%Y%m%d-%H%M%S')}"
    os.replace(tmp, new)
    os.replace(old, backup)
    return new, backup
