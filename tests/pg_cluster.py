"""A throwaway PostgreSQL cluster for the tests that run the manager's store on PostgreSQL.

`pg_server` (one per test process) runs initdb into a fresh directory and starts the server on
loopback (a free TCP port, its socket in the same directory), waiting for it at most
START_TIMEOUT_S; it is stopped when the process's tests end. `pg_dsn` gives each test an empty
database of its own. Both skip, saying why, where PostgreSQL's server binaries or psycopg 3 are
absent (Debian's `postgresql` package installs the binaries under /usr/lib/postgresql/N/bin).

As root (CI's containers) the server runs as the `postgres` user Debian's package creates:
PostgreSQL refuses to run as root. Its directory is then made under the system's temporary
directory, which that user can reach (pytest's tmp_path sits in root's private directory).

`DAMOCLES_TEST_DB=postgres` runs the manager tests on PostgreSQL: the manager configs the tests
write (tests/configs.py) name the DSN `postgresql://`, whose server and database libpq takes from
PGHOST, PGPORT, PGUSER and PGDATABASE; `manager_test_database` (autouse, tests/conftest.py)
points those at a fresh database of each test on this process's cluster, so a manager the test
starts, in process or as a child, and a restarted one find the same state. A second manager of
the same test takes a database of its own (`own_database`); what only an SQLite home has (its
manager.db file, backups) is `sqlite_only`."""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
SUPERUSER = "damocles"


def server_bin_dir() -> Path | None:
    """The directory holding initdb and pg_ctl: PATH first, then Debian's versioned directories."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(d) / "initdb").exists() and (Path(d) / "pg_ctl").exists():
            return Path(d)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    bin_dir: Path
    base: Path
    port: int
    user: str | None       # the OS user running the server (None: this one)

    @property
    def data(self) -> Path:
        return self.base / "data"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin_dir / args[0]), *args[1:]], capture_output=True, text=True,
                              timeout=timeout, user=self.user, cwd=self.base)

    def start(self) -> None:
        init = self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                         "--no-sync", timeout=120)
        if init.returncode:
            raise RuntimeError(f"initdb failed: {init.stderr[-2000:]}")
        opts = (f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
                f"-c max_connections=200 -c shared_buffers=32MB")
        started = self._run("pg_ctl", "start", "-D", str(self.data), "-w", "-t", str(START_TIMEOUT_S),
                            "-l", str(self.base / "server.log"), "-o", opts, timeout=START_TIMEOUT_S + 30)
        if started.returncode:
            log = (self.base / "server.log").read_text(errors="replace")[-2000:] if (self.base / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stdout[-1000:]} {started.stderr[-1000:]}\n{log}")

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", str(STOP_TIMEOUT_S),
                  timeout=STOP_TIMEOUT_S + 30)


def _skip(why: str) -> None:
    """Skip, unless the run requires PostgreSQL (CI sets DAMOCLES_REQUIRE_POSTGRES=1): then fail."""
    if os.environ.get("DAMOCLES_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PostgreSQL is required here (DAMOCLES_REQUIRE_POSTGRES=1): {why}")
    pytest.skip(why)


def start_cluster() -> Cluster:
    bin_dir = server_bin_dir()
    if bin_dir is None:
        _skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _skip('psycopg 3 is not installed: pip install -e ".[postgres]"')
    user = None
    base = Path(tempfile.mkdtemp(prefix="damocles-pg-"))
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(base)
            _skip("running as root and there is no `postgres` user to run the server as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        user = "postgres"
    cluster = Cluster(bin_dir, base, _free_port(), user)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
    return cluster


_shared: Cluster | None = None


def shared_cluster() -> Cluster:
    """This test process's cluster: started on first use, stopped and removed when it exits."""
    global _shared
    if _shared is None:
        _shared = start_cluster()
        atexit.register(_remove, _shared)
    return _shared


def _remove(cluster: Cluster) -> None:
    cluster.stop()
    shutil.rmtree(cluster.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    return shared_cluster()


_names = itertools.count()


def create_database(cluster: Cluster) -> str:
    """A new empty database on `cluster`; returns its name."""
    import psycopg
    name = f"t{os.getpid()}_{next(_names)}"
    with psycopg.connect(cluster.dsn(), autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(cluster: Cluster, name: str) -> None:
    """Drop it, closing what is still connected (a manager a failed test left running)."""
    import psycopg
    with psycopg.connect(cluster.dsn(), autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(pg_server):
    """A DSN to an empty database of this test's own, dropped after it."""
    name = create_database(pg_server)
    yield pg_server.dsn(name)
    drop_database(pg_server, name)


TEST_DB = os.environ.get("DAMOCLES_TEST_DB") or "sqlite"
if TEST_DB not in ("sqlite", "postgres"):
    raise pytest.UsageError(f"DAMOCLES_TEST_DB={TEST_DB!r}: use sqlite (the default) or postgres")
if TEST_DB == "postgres" and os.environ.get("DAMOCLES_BIN"):
    raise pytest.UsageError("DAMOCLES_TEST_DB=postgres with DAMOCLES_BIN: the frozen executable has SQLite only")
_LIBPQ_ENV = ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE")


def manager_db_config() -> dict:
    """The `[Common]` keys a test's manager config takes for the store DAMOCLES_TEST_DB names."""
    if TEST_DB == "sqlite":
        return {}
    return {"DB": {"Driver": "postgres", "Postgres": {"DSN": "postgresql://"}}}     # libpq's PG* variables


_DEFAULT_DSN = 'DSN = "postgresql://"'
_more: list[str] = []          # the databases own_database made


def own_database(config_text: str) -> str:
    """A manager config's text (tests/configs.py) whose state is a database of its own, named in
    the DSN, not the test's (with DAMOCLES_TEST_DB=postgres; unchanged otherwise): a second
    manager in one test, or the manager of a module-scoped fixture, which outlives each test's
    database (its own is dropped with the cluster)."""
    if TEST_DB == "sqlite":
        return config_text
    assert _DEFAULT_DSN in config_text, "not a config of tests/configs.py"
    cluster = shared_cluster()
    name = create_database(cluster)
    _more.append(name)
    return config_text.replace(_DEFAULT_DSN, f'DSN = "{cluster.dsn(name)}"')


@contextmanager
def manager_test_database():
    """With DAMOCLES_TEST_DB=postgres: libpq's variables point at a fresh database for the block
    (and the processes started in it), dropped after it."""
    if TEST_DB == "sqlite":
        yield
        return
    cluster = shared_cluster()
    name = create_database(cluster)
    first_more = len(_more)
    saved = {k: os.environ.get(k) for k in _LIBPQ_ENV}
    os.environ.update(PGHOST="127.0.0.1", PGPORT=str(cluster.port), PGUSER=SUPERUSER, PGDATABASE=name)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for n in [name, *_more[first_more:]]:
            drop_database(cluster, n)
        del _more[first_more:]


sqlite_only = pytest.mark.skipif(TEST_DB != "sqlite", reason="an SQLite manager.db's own behaviour (DAMOCLES_TEST_DB=postgres)")


def db_table(store) -> dict:
    """`[Common]`'s DB table naming `store` (a DBConfig), whatever DAMOCLES_TEST_DB says."""
    if store.driver == "sqlite":
        return {"DB": {"Driver": "sqlite"}}
    return {"DB": {"Driver": "postgres", "Postgres": {"DSN": store.dsn}}}


@pytest.fixture(params=["sqlite", "postgres"])
def manager_store(request):
    """`[Common.DB]` (a DBConfig) for each driver: the module tests of the manager's state run on
    both (postgres: an empty database of the test's own)."""
    from appliance.manager.config import DBConfig
    if request.param == "sqlite":
        return DBConfig()
    return DBConfig("postgres", request.getfixturevalue("pg_dsn"))
