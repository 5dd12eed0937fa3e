import json

from appliance.worker.journal import LocationLock

from .conftest import run_cli


def test_sealing_init_and_file_init(tmp_path):
    out = json.loads(run_cli("store", "sealing-init", "-l", str(tmp_path / "a"), "-l", str(tmp_path / "b"), "--json",
                             check=True).stdout)
    assert [r["initialised"] for r in out["locations"]] == [True, True]
    assert (tmp_path / "a" / "meta" / "journal.db").exists() and (tmp_path / "b" / "data").is_dir()
    lock = LocationLock(tmp_path / "a")
    p = run_cli("store", "sealing-init", "-l", str(tmp_path / "a"))
    assert p.returncode == 2 and "in use by worker process" in p.stderr
    lock.release()
    r = json.loads(run_cli("store", "file-init", "-l", str(tmp_path / "p"), "--name", "p1", "--json", check=True).stdout)
    assert r["Name"] == "p1" and r["initialised"] and (tmp_path / "p" / "sealed").is_dir()
    again = json.loads(run_cli("store", "file-init", "-l", str(tmp_path / "p"), "--json", check=True).stdout)
    assert again["ID"] == r["ID"] and again["initialised"] is False
