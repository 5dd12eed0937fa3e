"""The manager config as Damocles' manager reads it, its numbering and its choice of miner
(issue 15, item 5).

The fixtures in tests/fixtures/damocles/ are our own text, written from ipfs-force-community/damocles
at commit 4235a89557219de436bba441e727af3a42f903f0:
  manager-daemon-init.cfg   what `damocles-manager daemon init` writes as sector-manager.cfg, from
                            our reading of damocles-manager/cmd/damocles-manager/daemon.go
                            (modules.DefaultConfig(true)), damocles-manager/modules/config.go (the
                            defaults and example values), pkg/confmgr/conf_mgr.go (ConfigComment:
                            "# Default config:", then every "\\n" becomes "\\n#" and "#[" becomes
                            "[") and BurntSushi/toml v1.5.0's encoder (go.mod): direct keys before
                            sub-tables, nil pointers and nil slices left out, an empty line before
                            each [[array table]] and top-level table, time.Duration as its String().
  manager-docs-minimal.cfg  docs/en/04.damocles-manager-config.md, "A minimal working configuration
                            file example" (note its `[Miners.Post]`)
  manager-docs.cfg          the same page's section examples with their keys set
Numbering: damocles-manager/modules/impl/sectors/mgr.go (Allocate: a random eligible miner; the
floor is MinNumber when set, else InitNumber; MaxNumber checked) and number_allocator.go
(NextN: max(last, floor) + count, stored only when it passes the check)."""

from __future__ import annotations

import random
import re
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from appliance.chain.devnet import Devnet
from appliance.chain.policy import ChainPolicy
from appliance.cli import main as cli
from appliance.config import ConfigError, load_toml
from appliance.core.proof_types import seal_proof
from appliance.manager.config import config_path, load_config, parse_config
from appliance.manager.config_file import DEVNET_CFG
from appliance.manager.sealer import Sealer
from appliance.manager.service import ManagerService, init_home
from appliance.manager.state import ManagerState

from .configs import manager_toml, write_manager_config

FIXTURES = Path(__file__).parent / "fixtures" / "damocles"
P2K, P8M = seal_proof("StackedDrg2KiBV1_1"), seal_proof("StackedDrg8MiBV1_1")


def _uncommented(text: str) -> str:
    """The daemon-init file with every commented-out key set (its first line is the only comment)."""
    head, *rest = text.splitlines()
    return "\n".join([head] + [line[1:] if line.startswith("#") else line for line in rest]) + "\n"


# ---------------------------------------------------------------- the files load

def test_the_verbatim_daemon_init_output_loads_as_go_reads_it(tmp_path):
    cfg_file = tmp_path / "sector-manager.cfg"
    cfg_file.write_text((FIXTURES / "manager-daemon-init.cfg").read_text())
    cfg = load_config(cfg_file)
    # Go decodes the empty [[Common.PersistStores]] as Path "" and opens filepath.Abs(""): the
    # directory relative paths start from. Here that is the config's directory, named by its path.
    assert [(s.name, s.path) for s in cfg.persist_stores] == [(str(tmp_path), tmp_path)]
    assert [s.path for s in cfg.piece_stores] == [tmp_path]
    # the example miner has every key commented out: Go makes it actor 0, which no chain has
    assert cfg.miners == []
    assert any("PersistStores]][0].Path is empty" in w for w in cfg.warnings)
    assert any("[[Miners]][0]: no Actor" in w for w in cfg.warnings)


def test_every_key_of_daemon_init_is_known(tmp_path):
    cfg_file = tmp_path / "sector-manager.cfg"
    cfg_file.write_text(_uncommented((FIXTURES / "manager-daemon-init.cfg").read_text()))
    cfg = load_config(cfg_file)
    assert cfg.warnings == []             # no key of Damocles' defaults is unknown here
    (m,) = cfg.miners
    assert (m.actor, m.min_number, m.max_number, m.enabled, m.lifetime_days, m.confidence) == (10086, 10, 1_000_000, True, 540, 10)
    assert (m.pre_batch.threshold, m.pre_batch.max_wait, m.pre_batch.check_interval, m.prove_batch.threshold) == (2, 3600.0, 60.0, 4)
    assert (m.post.enabled, m.post.challenge_confidence, m.post.submit_confidence, m.winning_post) == (True, 10, 4, False)
    assert (cfg.worker_prover.job_max_try, cfg.worker_prover.heartbeat_timeout, cfg.worker_prover.job_lifetime) == (2, 15.0, 90000.0)
    assert [(s.name, s.path, s.weight, s.allow_miners, s.deny_miners) for s in cfg.persist_stores] == [
        ("{store_name}", tmp_path / "{store_path}", 1, (1, 2), (3, 4))]


def test_the_docs_minimal_configuration_loads():
    cfg = load_config(FIXTURES / "manager-docs-minimal.cfg")
    assert cfg.warnings == []
    assert [s.name for s in cfg.persist_stores] == [f"{{store_name{i}}}" for i in range(1, 5)]
    (m,) = cfg.miners
    assert (m.actor, m.min_number, m.max_number, m.enable_deals, m.winning_post, m.seal_proof) == (10086, 1000, None, True, True, None)


def test_the_docs_section_examples_load():
    cfg = load_config(FIXTURES / "manager-docs.cfg")
    assert cfg.warnings == []
    (m,) = cfg.miners
    assert (m.min_number, m.max_number) == (10, 1_000_000)


def test_scan_persist_stores_finds_each_sectorstore_json(tmp_path):
    """modules.ScanPersistStores: glob, keep the matches with a sectorstore.json, Name else ID,
    the match as Path; Go's encoding/json matches the file's keys without case."""
    (tmp_path / "stores" / "a").mkdir(parents=True)
    (tmp_path / "stores" / "a" / "sectorstore.json").write_text(
        '{"ID": "6df11a94-4f04-4070-9ccd-54618e5e390d", "Strict": false, "ReadOnly": false, "Weight": 0, '
        '"AllowMiners": [1001], "DenyMiners": [], "PluginName": "", "Meta": {}}')
    (tmp_path / "stores" / "b").mkdir()
    (tmp_path / "stores" / "b" / "sectorstore.json").write_text('{"name": "b-store", "readonly": true, "weight": 3}')
    (tmp_path / "stores" / "c").mkdir()                       # no sectorstore.json: not a store
    cfg = parse_config({"Common": {"ScanPersistStores": ["stores/*"],
                                   "PersistStores": [{"Name": "listed", "Path": "/x"}]}}, tmp_path)
    assert cfg.warnings == []
    assert [(s.name, s.path, s.read_only, s.weight, s.allow_miners) for s in cfg.persist_stores] == [
        ("listed", Path("/x"), False, 1, ()),
        ("6df11a94-4f04-4070-9ccd-54618e5e390d", tmp_path / "stores" / "a", False, 1, (1001,)),
        ("b-store", tmp_path / "stores" / "b", True, 3, ())]
    with pytest.raises(ConfigError, match="duplicate store name 'b-store'"):
        parse_config({"Common": {"ScanPersistStores": ["stores/*"], "PersistStores": [{"Name": "b-store", "Path": "/x"}]}},
                     tmp_path)
    (tmp_path / "stores" / "c" / "sectorstore.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"ScanPersistStores 'stores/\*': .*stores/c/sectorstore.json cannot be read"):
        parse_config({"Common": {"ScanPersistStores": ["stores/*"]}}, tmp_path)


def test_keys_match_without_case_as_go_decodes_them():
    text = (FIXTURES / "manager-docs-minimal.cfg").read_text().replace("[Miners.Post]\n", "[Miners.post]\nchallengeconfidence = 7\n")
    import tomllib
    raw = tomllib.loads(text.replace("Actor = 10086", "actor = 10086").replace("[Miners.Sector]", "[Miners.SECTOR]")
                        .replace("InitNumber = 1000", "initnumber = 1000\nMAXNUMBER = 2000"))
    cfg = parse_config(raw)
    assert cfg.warnings == []
    (m,) = cfg.miners
    assert (m.actor, m.min_number, m.max_number, m.post.challenge_confidence) == (10086, 1000, 2000, 7)
    with pytest.raises(ConfigError, match=r"Miners\[0\].Sector: keys 'MinNumber' and 'minnumber' are the same key"):
        parse_config({"Miners": [{"Actor": 1, "Sector": {"MinNumber": 1, "minnumber": 2}}]})
    with pytest.raises(ConfigError, match=r"\[\[Miners\]\]\[0\].Actor is required"):   # settings but no actor
        parse_config({"Miners": [{"Sector": {"MinNumber": 1}}]})


def test_unknown_keys_stay_warnings():
    cfg = parse_config({"Common": {"Nope": 1}, "Miners": [{"Actor": 1, "Sector": {"Typo": 2}, "PoSt": {"X": 1}}]})
    assert sorted(cfg.warnings) == ["[Common]: unknown key 'Nope' ignored", "[[Miners]][0].PoSt: unknown key 'X' ignored",
                                    "[[Miners]][0].Sector: unknown key 'Typo' ignored"]
    with pytest.raises(ConfigError, match=r"^sector-manager.cfg.Miners: expected an array of tables"):
        parse_config({"Common": {"PersistStores": [{"Name": "a", "Path": "/a"}]}, "Miners": {"Actor": 1}})


# ------------------------------------------------------------------- numbering

@pytest.fixture
def chain(tmp_path):
    c = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0))
    for actor in (1000, 1001, 1002):
        c.create_miner(actor, P2K.id)
    yield c
    c.close()


def _sealer(tmp_path, chain, miners: list[dict], rng=None, db="m.db", legacy=False) -> Sealer:
    cfg = parse_config({"Miners": miners}, legacy=legacy)
    return Sealer(cfg, ManagerState(tmp_path / db), chain, rng=rng)


def _numbers(sealer, n: int) -> list:
    out = []
    for _ in range(n):
        a = sealer.allocate_sector({})
        out.append(a and a["ID"]["Number"])
    return out


@pytest.mark.parametrize("sector, first", [
    ({}, 1),                                          # max(0, 0) + 1: the first sector is 1
    ({"InitNumber": 1000}, 1001),
    ({"MinNumber": 10}, 11),
    ({"InitNumber": 1000, "MinNumber": 10}, 11),      # Go: MinNumber when set, InitNumber only otherwise
    ({"MinNumber": 0, "InitNumber": 1000}, 1),
])
def test_numbering_starts_as_damocles_does(tmp_path, chain, sector, first):
    s = _sealer(tmp_path, chain, [{"Actor": 1000, "Sector": sector}])
    assert _numbers(s, 3) == [first, first + 1, first + 2]


def test_max_number_is_the_last_one_handed_out(tmp_path, chain):
    s = _sealer(tmp_path, chain, [{"Actor": 1000, "Sector": {"MinNumber": 5, "MaxNumber": 7}}])
    assert _numbers(s, 4) == [6, 7, None, None]
    with pytest.raises(ConfigError, match="MaxNumber 5 is below MinNumber 5 \\+ 1"):
        parse_config({"Miners": [{"Actor": 1, "Sector": {"MinNumber": 5, "MaxNumber": 5}}]})


def test_min_number_moves_the_counter_up_never_down(tmp_path, chain):
    s = _sealer(tmp_path, chain, [{"Actor": 1000}])
    assert _numbers(s, 2) == [1, 2]
    s.state.close()
    s = _sealer(tmp_path, chain, [{"Actor": 1000, "Sector": {"MinNumber": 100}}])      # raised while running
    assert _numbers(s, 2) == [101, 102]
    s.state.close()
    s = _sealer(tmp_path, chain, [{"Actor": 1000, "Sector": {"MinNumber": 3}}])        # lowered: no effect
    assert _numbers(s, 1) == [103]


def test_a_database_of_an_earlier_version_keeps_its_counter(tmp_path, chain):
    """Earlier versions kept `next` = the number after the last one handed out (sectors 0..6 of
    miner 1000 here): the first number now is 7, neither reused nor skipped."""
    ManagerState(tmp_path / "m.db").close()
    db = sqlite3.connect(tmp_path / "m.db")
    db.execute("INSERT INTO counters (miner, next) VALUES (1000, 7)")
    db.commit()
    db.close()
    s = _sealer(tmp_path, chain, [{"Actor": 1000}])
    assert _numbers(s, 2) == [7, 8]


def test_a_legacy_manager_toml_keeps_its_numbers_and_upgrade_carries_them_over(tmp_path):
    home = tmp_path / "home"
    write_manager_config(home, legacy=True, config={"Miners": [{"Actor": 1000, "SealProof": "StackedDrg2KiBV1_1", "Sector": {"MinNumber": 5}},
                                            {"Actor": 1001, "SealProof": "StackedDrg2KiBV1_1", "Sector": {"MinNumber": 1}}]})
    (home / "persist-1").mkdir()
    svc = ManagerService(home)
    try:
        assert [svc.sealer.allocate_sector({"AllowedMiners": [a]})["ID"]["Number"] for a in (1000, 1000)] == [5, 6]
    finally:
        svc.stop()
    assert cli(["manager", "init", "--upgrade", "--home", str(home)]) == 0
    assert not (home / "manager.toml").exists() and (home / "manager.toml.bak").exists()
    assert config_path(home) == home / "sector-manager.cfg"
    text = (home / "sector-manager.cfg").read_text()
    assert "MinNumber = 4 " in text and "MinNumber = 0 " in text and "MinNumber = 5" not in text
    svc = ManagerService(home)
    try:
        assert svc.sealer.allocate_sector({"AllowedMiners": [1000]})["ID"]["Number"] == 7       # never 5 or 6 again
        assert svc.sealer.allocate_sector({"AllowedMiners": [1001]})["ID"]["Number"] == 1       # as manager.toml gave
    finally:
        svc.stop()
    assert cli(["manager", "init", "--upgrade", "--home", str(home)]) == 2       # nothing left to upgrade


def test_a_home_with_both_configs_is_refused(tmp_path):
    write_manager_config(tmp_path)
    write_manager_config(tmp_path, legacy=True)
    with pytest.raises(ConfigError, match="has both sector-manager.cfg and manager.toml"):
        ManagerService(tmp_path)


# --------------------------------------------------------------- random choice

def test_allocation_picks_a_random_eligible_miner(tmp_path, chain):
    miners = [{"Actor": a} for a in (1000, 1001, 1002)]
    draws = []
    for run in range(2):
        s = _sealer(tmp_path, chain, miners, rng=random.Random(7), db=f"m{run}.db")
        draws.append([a["ID"]["Miner"] for a in (s.allocate_sector({}) for _ in range(30))])
        s.state.close()
    assert draws[0] == draws[1]                          # the seeded draw is repeatable
    assert set(Counter(draws[0])) == {1000, 1001, 1002}  # and not always the first miner
    s = _sealer(tmp_path, chain, miners, rng=random.Random(7), db="m2.db")
    assert {s.allocate_sector({"AllowedMiners": [1001]})["ID"]["Miner"] for _ in range(5)} == {1001}


def test_a_miner_past_max_number_leaves_the_draw(tmp_path, chain):
    class First(random.Random):          # always the first candidate left: 1000 while it has numbers
        def randrange(self, n):
            return 0
    s = _sealer(tmp_path, chain, [{"Actor": 1000, "Sector": {"MaxNumber": 2}}, {"Actor": 1001}], rng=First())
    assert [(a["ID"]["Miner"], a["ID"]["Number"]) for a in (s.allocate_sector({}) for _ in range(4))] == [
        (1000, 1), (1000, 2), (1001, 1), (1001, 2)]


# ----------------------------------------------------------------- SealProof

def test_seal_proof_comes_from_the_chain_when_not_set(tmp_path):
    chain = Devnet(tmp_path / "devnet.db", ChainPolicy(block_time=0))
    chain.create_miner(1000, P8M.id)           # not the 2KiB that earlier versions assumed
    s = _sealer(tmp_path, chain, [{"Actor": 1000}])
    assert s.allocate_sector({})["ProofType"] == P8M.id
    with pytest.raises(ConfigError, match=r"Actor = 1000: SealProof StackedDrg2KiBV1_1 differs from the chain's "
                                          r"StackedDrg8MiBV1_1"):
        _sealer(tmp_path, chain, [{"Actor": 1000, "SealProof": "StackedDrg2KiBV1_1"}], db="m2.db")
    chain.close()


def test_seal_proof_is_required_for_a_miner_the_chain_lacks(tmp_path):
    # without [Common.API] Chain the chain is the devnet, which has no miner 10086
    text = (FIXTURES / "manager-docs-minimal.cfg").read_text()
    devnet_text = text.replace('Chain = "/ip4/{api_host}/tcp/{api_port}"', "")
    assert devnet_text != text
    with pytest.raises(ConfigError, match=r"Actor = 10086: SealProof is not set and the chain has no miner f010086"):
        init_home(tmp_path / "home", devnet_text)
    # with it, the miner is on the node: init writes the config and contacts nothing (as `daemon init`)
    init_home(tmp_path / "node-home", text)
    assert not (tmp_path / "node-home" / "devnet.db").exists()


# ------------------------------------------------------------ init and run

def test_init_writes_sector_manager_cfg_in_daemon_init_layout_and_run_reads_it(tmp_path):
    home = tmp_path / "home"
    assert cli(["manager", "init", "--home", str(home)]) == 0
    ours = (home / "sector-manager.cfg").read_text()
    assert ours == DEVNET_CFG and not (home / "manager.toml").exists()
    theirs = (FIXTURES / "manager-daemon-init.cfg").read_text()

    def headers(text):
        return [h.lstrip("#") for h in re.findall(r"^#?\[.*?\]\]?", text, re.M)]
    assert headers(ours)[:len(headers(theirs))] == headers(theirs)       # the same tables, in the same order
    for line in theirs.splitlines()[1:]:       # each default is there, commented out or set for the devnet
        key = re.match(r"#?(\w+) = ", line)
        assert not key or re.search(rf"^#?{key.group(1)} = ", ours, re.M), line
    cfg = load_config(home / "sector-manager.cfg")
    assert cfg.warnings == [] and [(m.actor, m.seal_proof, m.min_number) for m in cfg.miners] == [(1000, P2K.id, 0)]
    assert cli(["manager", "init", "--home", str(home)]) == 2             # refuses to overwrite
    svc = ManagerService(home)
    try:
        host, port = svc.start("127.0.0.1:0")
        assert port > 0 and svc.sealer.allocate_sector({})["ID"] == {"Miner": 1000, "Number": 1}
    finally:
        svc.stop()


def test_manager_toml_text_reads_alike_under_both_names(tmp_path):
    text = manager_toml(None)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manager.toml").write_text(text)
    (tmp_path / "a" / "sector-manager.cfg.sample").write_text(text)
    legacy = load_config(tmp_path / "a" / "manager.toml")
    new = parse_config(load_toml(tmp_path / "a" / "sector-manager.cfg.sample"), tmp_path / "a")
    assert legacy.miners == new.miners and legacy.persist_stores == new.persist_stores
