"""Files that hold tokens are 0600 from the moment they exist: the configs `damocles up` writes
for its worker and prover, a config `damocles plan --out` writes (it may carry --token), the
manager's secret; and `damocles up` prints no token."""

import os
import stat

import pytest

from appliance.cli import main


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)          # what a login shell has: files 0644 unless the writer says otherwise
    yield
    os.umask(old)


def test_up_writes_its_token_files_0600(tmp_path, loose_umask):
    from appliance.up import _init
    _init(tmp_path, "2KiB", 1)
    for path in (tmp_path / "worker/worker.toml", tmp_path / "post/post.toml", tmp_path / "manager/secret"):
        assert 'token = "ey' in path.read_text() or path.name == "secret"
        assert mode(path) == 0o600, f"{path} is {oct(mode(path))}"
    assert not list(tmp_path.rglob("*.tmp"))


def test_plan_out_with_a_token_is_0600(tmp_path, loose_umask, capsys):
    (tmp_path / "seal").mkdir()
    (tmp_path / "persist").mkdir()
    out = tmp_path / "worker.toml"
    assert main(["plan", "--size", "2KiB", "--sealing-dir", str(tmp_path / "seal"), "--persist-dir",
                 str(tmp_path / "persist"), "--manager", "/ip4/127.0.0.1/tcp/1789", "--token", "tok-1",
                 "--out", str(out)]) == 0
    assert 'token = "tok-1"' in out.read_text() and mode(out) == 0o600
