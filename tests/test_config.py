import pytest

from appliance.config import ConfigError, load_toml


def test_load_toml(tmp_path):
    f = tmp_path / "worker.toml"
    f.write_text('[worker]\nname = "w1"\n[[sealing_thread]]\nlocation = "/data/1"\n')
    assert load_toml(f) == {"worker": {"name": "w1"}, "sealing_thread": [{"location": "/data/1"}]}


def test_load_toml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[worker]\nname = \n")
    with pytest.raises(ConfigError, match=r"bad.toml is not valid TOML: .*line 2"):
        load_toml(bad)
    with pytest.raises(ConfigError, match="is a directory"):
        load_toml(tmp_path)
