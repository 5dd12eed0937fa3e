"""`[Common.DB]` in sector-manager.cfg: the store driver and the PostgreSQL DSN; and a manager
refusing to start on a PostgreSQL database it cannot reach."""

from __future__ import annotations

import pytest

from appliance.cli import main as cli
from appliance.config import ConfigError
from appliance.manager.config import DBConfig, parse_config


def test_the_default_store_is_sqlite():
    assert parse_config({}).db == DBConfig("sqlite", None)
    assert parse_config({"Common": {"DB": {"Driver": "SQLite"}}}).db.driver == "sqlite"


def test_postgres_takes_its_dsn_keys_matched_without_case():
    cfg = parse_config({"common": {"db": {"driver": "postgres", "postgres": {"dsn": "postgresql://damocles@db/damocles"}}}})
    assert cfg.db == DBConfig("postgres", "postgresql://damocles@db/damocles")
    assert cfg.warnings == []


def test_damocles_badger_is_the_embedded_store():
    """Damocles' default driver (its documented config sets it) is this manager's manager.db."""
    cfg = parse_config({"Common": {"DB": {"Driver": "badger", "Badger": {"BaseDir": ""}}}})
    assert (cfg.db.driver, cfg.warnings) == ("sqlite", [])
    cfg = parse_config({"Common": {"DB": {"Driver": "badger", "Badger": {"BaseDir": "/data/badger"}}}})
    assert cfg.db.driver == "sqlite" and "[Common.DB.Badger].BaseDir is ignored" in cfg.warnings[0]


@pytest.mark.parametrize("driver", ["mongo", "plugin", "mysql"])
def test_other_drivers_are_refused_naming_the_key_and_what_is_supported(driver):
    with pytest.raises(ConfigError, match=rf"\[Common.DB\].Driver: '{driver}' is not supported: use \"sqlite\".*\"postgres\""):
        parse_config({"Common": {"DB": {"Driver": driver}}})


def test_postgres_needs_exactly_one_dsn_source(tmp_path):
    with pytest.raises(ConfigError, match=r"\[Common.DB.Postgres\]: .*exactly one of DSN .* and DSNFile"):
        parse_config({"Common": {"DB": {"Driver": "postgres"}}})
    with pytest.raises(ConfigError, match="exactly one of DSN"):
        parse_config({"Common": {"DB": {"Driver": "postgres", "Postgres": {"DSN": "postgresql://a@b/c", "DSNFile": "f"}}}},
                     tmp_path)


def test_the_dsn_file_is_read_relative_to_the_config(tmp_path):
    (tmp_path / "pg.dsn").write_text("postgresql://damocles:secret@db/damocles\n")
    cfg = parse_config({"Common": {"DB": {"Driver": "postgres", "Postgres": {"DSNFile": "pg.dsn"}}}}, tmp_path)
    assert cfg.db.dsn == "postgresql://damocles:secret@db/damocles" and cfg.warnings == []
    assert "secret" not in repr(cfg.db)
    with pytest.raises(ConfigError, match=rf"DSNFile: {tmp_path / 'nope'} cannot be read"):
        parse_config({"Common": {"DB": {"Driver": "postgres", "Postgres": {"DSNFile": "nope"}}}}, tmp_path)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        parse_config({"Common": {"DB": {"Driver": "postgres", "Postgres": {"DSNFile": "empty"}}}}, tmp_path)


@pytest.mark.parametrize("dsn", ["postgresql://damocles:secret@db/damocles", "host=db user=damocles password=secret"])
def test_a_password_in_the_config_is_warned_about(dsn):
    cfg = parse_config({"Common": {"DB": {"Driver": "postgres", "Postgres": {"DSN": dsn}}}})
    assert cfg.db.dsn == dsn and "carries a password" in cfg.warnings[0]


def test_a_manager_whose_database_cannot_be_reached_refuses_to_start_naming_it(tmp_path, capsys):
    pytest.importorskip("psycopg")
    home = tmp_path / "home"
    home.mkdir()
    (home / "sector-manager.cfg").write_text('[Common.DB]\nDriver = "postgres"\n[Common.DB.Postgres]\n'
                                             'DSN = "postgresql://damocles:hunter2@127.0.0.1:1/none"\n')
    assert cli(["manager", "run", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert "manager state database postgres" in err and "dbname=none" in err and "cannot be opened" in err
    assert "hunter2" not in err
    assert not (home / "manager.db").exists()


def test_the_sqlite_path_never_imports_psycopg(tmp_path):
    """The frozen binary has no psycopg: a manager on SQLite must not need it."""
    import subprocess
    import sys
    code = ("import sys; from appliance.manager.service import ManagerService; from appliance.manager.state import "
            f"ManagerState; s = ManagerState({str(tmp_path / 'manager.db')!r}); s.allocate(1, 8, 0, None); s.close(); "
            "print('psycopg' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
