import os
import re
from types import SimpleNamespace

import pytest

from appliance.config import ConfigError
from appliance.config.cpuset import format_cpuset, parse_cpuset
from appliance.config.validate import manager_url
from appliance.worker.config import SealingConfig, ThreadConfig, parse_worker_config
from appliance.worker.thread import SealingThread

BASE = {"sector_manager": {"rpc_client": {"addr": "/ip4/127.0.0.1/tcp/1789"}}}


def test_defaults_and_overrides(tmp_path):
    cfg = parse_worker_config({
        **BASE,
        "sealing": {"max_retries": 3, "recover_interval": "10s", "allowed_sizes": ["2KiB"]},
        "sealing_thread": [{"location": str(tmp_path / "t1")},
                           {"location": str(tmp_path / "t2"), "sealing": {"max_retries": 9}}],
        "attached": [{"name": "p1", "location": str(tmp_path / "p1")}],
        "processors": {"limitation": {"concurrent": {"pc1": 2}, "staggered": {"pc1": "500ms"}},
                       "ext_locks": {"gpu": 1},
                       "pc1": [{"cgroup": {"cpuset": "0"}, "concurrent": 2, "envs": {"X": "1"}}],
                       "c2": [{"locks": ["gpu"], "numa_preferred": 0}]},
    }, available_cpus={0, 1})
    assert cfg.manager_url == "http://127.0.0.1:1789/rpc/v0"
    assert cfg.sealing.max_retries == 3 and cfg.sealing.recover_interval == 10.0 and cfg.sealing.rpc_polling_interval == 180.0
    assert [t.sealing.max_retries for t in cfg.threads] == [3, 9]
    assert cfg.threads[1].sealing.recover_interval == 10.0            # inherited from [sealing]
    assert cfg.concurrent == {"pc1": 2} and cfg.staggered == {"pc1": 0.5} and cfg.ext_locks == {"gpu": 1}
    pc1 = cfg.processors["pc1"][0]
    assert pc1.cpuset == (0,) and pc1.concurrent == 2 and pc1.envs == {"X": "1"} and pc1.auto_restart
    assert cfg.processors["c2"][0].locks == ("gpu",) and cfg.processors["c2"][0].numa_preferred == 0


def test_unknown_keys_are_warned():
    cfg = parse_worker_config({**BASE, "sealing": {"max_retriez": 1}, "extra": {}})
    assert "worker.toml: unknown key 'extra' ignored" in cfg.warnings
    assert "[sealing]: unknown key 'max_retriez' ignored" in cfg.warnings


@pytest.mark.parametrize("raw,msg", [
    ({}, r"rpc_client\].addr is required"),
    ({"sector_manager": {"rpc_client": {"addr": "localhost"}}}, "neither a URL nor a multiaddr"),
    ({**BASE, "processors": {"pc1": [{"cgroup": {"cpuset": "0-7"}}]}}, "CPU 2 does not exist"),
    ({**BASE, "processors": {"pc1": [{"cgroup": {"cpuset": "a-b"}}]}}, "is not a CPU list"),
    ({**BASE, "processors": {"pc3": [{}]}}, "'pc3' is not a processor stage"),
    ({**BASE, "processors": {"limitation": {"concurrent": {"pc9": 1}}}}, "'pc9' is not a stage"),
    ({**BASE, "processors": {"limitation": {"concurrent": {"pc1": 0}}}}, "pc1: 0 is not a positive integer"),
    ({**BASE, "processors": {"c2": [{"locks": ["gpu"]}]}}, "'gpu' is not declared"),
    ({**BASE, "sealing_thread": [{"location": "/tmp/x"}, {"location": "/tmp/x"}]}, "used by another sealing thread"),
    ({**BASE, "sealing_thread": [{"plan": "sealer"}]}, "location is required"),
    ({**BASE, "sealing_thread": [{"location": "/tmp/x", "plan": "bake"}]}, "'bake' is not one of"),
    ({**BASE, "sealing": {"recover_interval": "soon"}}, r"\[sealing\].recover_interval: invalid duration"),
    ({**BASE, "sealing": {"allowed_sizes": ["3KiB"]}}, "unknown sector size"),
])
def test_bad_configs_are_refused(raw, msg):
    with pytest.raises(ConfigError, match=msg):
        parse_worker_config(raw, available_cpus={0, 1})


def test_cpusets_and_addresses():
    assert parse_cpuset("0-2, 5", "x", {0, 1, 2, 5}) == (0, 1, 2, 5)
    assert format_cpuset([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert manager_url("http://10.0.0.1:1789", "x") == "http://10.0.0.1:1789/rpc/v0"


def _thread(tmp_path, **sealing):
    base = ThreadConfig(tmp_path, "sealer", SealingConfig(max_retries=3, **sealing))
    return SealingThread(0, SimpleNamespace(location=tmp_path, sealing=base.sealing), base)


def test_hot_config_is_applied_over_worker_toml_and_dropped_when_removed(tmp_path):
    t = _thread(tmp_path, recover_interval=7.0)
    assert not t.reload_hot_config()                 # no file: nothing changes
    hot = tmp_path / "config.toml"
    hot.write_text('plan = "sealer"\n[sealing]\nallowed_miners = [1001]\nmax_retries = 9\n')
    assert t.reload_hot_config()
    assert t.ctx.sealing.allowed_miners == (1001,) and t.ctx.sealing.max_retries == 9
    assert t.ctx.sealing.recover_interval == 7.0      # worker.toml's value stays where the file is silent
    assert not t.reload_hot_config()                 # unchanged mtime: not re-read
    hot.write_text('[sealing]\nmax_retries = 4\n')
    os.utime(hot, ns=(1, 1))                         # a different mtime, whatever the clock's resolution
    assert t.reload_hot_config() and t.ctx.sealing.max_retries == 4 and t.ctx.sealing.allowed_miners is None
    hot.unlink()
    assert t.reload_hot_config() and t.ctx.sealing.max_retries == 3


@pytest.mark.parametrize("text,msg", [
    ('location = "/elsewhere"\n', "location cannot be changed here"),
    ('plan = "niporep"\n', "cannot run on this worker yet"),
    ('plan = "wdpost"\n', "switches to wdpost only in worker.toml"),
    ('[sealing]\nmax_retries = -1\n', r"sealing.max_retries: -1 is not a non-negative integer"),
    ('[sealing\n', "is not valid TOML"),
])
def test_bad_hot_config_is_reported_and_ignored(tmp_path, text, msg):
    t = _thread(tmp_path)
    (tmp_path / "config.toml").write_text("[sealing]\nmax_retries = 8\n")
    assert t.reload_hot_config() and t.ctx.sealing.max_retries == 8
    (tmp_path / "config.toml").write_text(text)
    os.utime(tmp_path / "config.toml", ns=(2, 2))
    assert not t.reload_hot_config()
    assert re.search(msg, t.config_error) and "keeping the previous settings" in t.config_error
    assert t.ctx.sealing.max_retries == 8 and t.plan == "sealer"
    assert t.summary()["config_error"] == t.config_error
