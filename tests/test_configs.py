"""The tests' config builders (tests/configs.py) write what the product's parsers read: the
defaults the end-to-end tests rely on, overrides merged, None dropping a default, paths as text."""

import tomllib

from appliance.config import load_toml
from appliance.post.config import parse_post_config
from appliance.worker.config import parse_worker_config

from .configs import NO_PROCESSORS, post_toml, worker_toml

URL = "http://127.0.0.1:1789/rpc/v0"


def _worker(tmp_path, *args, **kwargs):
    f = tmp_path / "worker.toml"
    f.write_text(worker_toml(URL, "tok", tmp_path / "p", *args, **kwargs))
    return parse_worker_config(load_toml(f), available_cpus={0, 1})


def test_worker_defaults_are_the_short_test_worker(tmp_path):
    cfg = _worker(tmp_path, [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1", "plan": "snapup"}])
    assert (cfg.name, cfg.rpc_host, cfg.rpc_port, cfg.ping_interval) == ("w1", "127.0.0.1", 0, 1.0)
    assert (cfg.manager_url, cfg.manager_token) == (URL, "tok") and not cfg.warnings
    assert [(t.location, t.plan) for t in cfg.threads] == [(tmp_path / "t0", "sealer"), (tmp_path / "t1", "snapup")]
    assert [(a.name, a.location) for a in cfg.attached] == [("persist-1", tmp_path / "p")]
    s = cfg.sealing
    assert s.verify_after_pc2 and (s.recover_interval, s.rpc_polling_interval, s.seal_interval) == (0.2, 0.2, 0.1)
    assert cfg.concurrent == {"pc1": 2} and sorted(cfg.processors) == ["c2", "pc1", "pc2"]
    assert cfg.processors["pc1"][0].cpuset == (0, 1) and cfg.processors["c2"][0].bin    # c2: an external processor


def test_worker_overrides_merge_and_none_drops_a_default(tmp_path):
    cfg = _worker(tmp_path, [{"plan": "wdpost"}], name="w-post", worker={"ping_interval": None},
                  sealing={"verify_after_pc2": None, "max_retries": 2},
                  processors={**NO_PROCESSORS, "window_post": [{"concurrent": 1}]},
                  metrics={"enable": True, "http_listen": "127.0.0.1:9"})
    assert (cfg.name, cfg.ping_interval, cfg.metrics_enable, cfg.metrics_listen) == ("w-post", 30.0, True, "127.0.0.1:9")
    assert not cfg.sealing.verify_after_pc2 and cfg.sealing.max_retries == 2 and cfg.sealing.seal_interval == 0.1
    assert cfg.concurrent == {} and list(cfg.processors) == ["window_post"] and not cfg.warnings


def test_post_config_defaults_and_processors(tmp_path):
    raw = tomllib.loads(post_toml(URL, "tok", tmp_path / "p", name="prover-b",
                                  processors={"window_post": [{"cgroup": {"cpuset": "0"}}]}))
    cfg = parse_post_config(raw, available_cpus={0, 1})
    assert (cfg.name, cfg.poll_interval, cfg.heartbeat_interval, cfg.manager_url) == ("prover-b", 0.1, 0.2, URL)
    assert [(a.name, a.location) for a in cfg.attached] == [("persist-1", tmp_path / "p")]
    assert [p.cpuset for p in cfg.processors] == [(0,)] and not cfg.warnings
    assert "processors" not in tomllib.loads(post_toml(URL, "tok", tmp_path / "p"))
