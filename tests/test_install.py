"""install.sh on a bare-metal node, into a temporary prefix, without root or systemd: what a role
install puts where, a second run that changes nothing, uninstall (data kept) and purge, the
refusals that leave nothing half done, and (where the test runs as root) the systemd path against
a stand-in systemctl. The installed binary is a small stand-in; the slow test installs the real
one ($DAMOCLES_BIN, or dist/damocles) and starts every role from what install.sh wrote."""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import DAMOCLES_BIN, ROOT, read_line

FROZEN = Path(DAMOCLES_BIN) if DAMOCLES_BIN else ROOT / "dist/damocles"

STANDIN = r"""#!/bin/sh
# a stand-in for the frozen executable: just what install.sh asks of it
case "$1 $2" in
  "--version --json") echo '{"version": "VERSION", "frozen": FROZEN}' ;;
  "--version "*) echo "damocles VERSION (frozen)" ;;
  "manager init") mkdir -p "$4/persist-1" && printf '[RPC]\nListen = "127.0.0.1:1789"\n' > "$4/manager.toml" && echo secret > "$4/secret" ;;
  "manager token") echo "token-for-$8" ;;
  *) echo "stand-in: $*" >&2; exit 2 ;;
esac
"""

SYSTEMCTL = r"""#!/bin/sh
# a stand-in systemctl: logs every call, keeps "enabled" units as files in $FAKE_SYSTEMD_STATE
echo "$*" >> "$FAKE_SYSTEMD_STATE/calls"
case "$1" in
  is-enabled) test -e "$FAKE_SYSTEMD_STATE/$3" ;;
  enable) touch "$FAKE_SYSTEMD_STATE/$(basename "$3")" ;;
  disable) rm -f "$FAKE_SYSTEMD_STATE/$3" ;;
  cat) test -e "$FAKE_SYSTEMD_STATE/$2" ;;
  daemon-reload) ;;
  *) exit 1 ;;
esac
"""


def standin(path: Path, version="0.0-standin", frozen=True) -> Path:
    path.write_text(STANDIN.replace("VERSION", version).replace("FROZEN", "true" if frozen else "false"))
    path.chmod(0o755)
    return path


def install(*args, env=None, script=ROOT / "install.sh") -> subprocess.CompletedProcess:
    env = {**os.environ, "DAMOCLES_SYSTEMD_RUN_DIR": "/nonexistent/systemd", **(env or {})}   # no systemd here
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True, env=env, timeout=300)


def snapshot(root: Path) -> dict:
    """Every path under root with its mode, mtime and content digest."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
        out[str(p.relative_to(root))] = (st.st_mode, st.st_mtime_ns, digest)
    return out


@pytest.fixture
def node(tmp_path):
    return tmp_path / "prefix", standin(tmp_path / "damocles-standin")


def test_role_all_installs_binary_homes_configs_units_and_a_second_run_changes_nothing(node):
    prefix, binary = node
    p = install("--role", "all", "--prefix", str(prefix), "--binary", str(binary))
    assert p.returncode == 0, p.stderr
    home = prefix / "var/lib/damocles"
    assert (prefix / "bin/damocles").read_bytes() == binary.read_bytes()
    assert os.access(prefix / "bin/damocles", os.X_OK)
    assert (home / "manager/manager.toml").exists() and (home / "manager/persist-1").is_dir()
    worker = (home / "worker/worker.toml").read_text()
    assert 'rpc_client = { addr = "http://127.0.0.1:1789" }' in worker        # the manager on this host
    assert re.search(r'^token = "token-for-.*-worker"$', worker, re.M)        # minted by `manager token`
    assert f'location = "{home}/manager/persist-1"' in worker
    assert f'location = "{home}/worker/sealing-0"' in worker
    assert (home / "worker/worker.toml").stat().st_mode & 0o077 == 0        # it holds a token
    post = (home / "post/post.toml").read_text()
    assert re.search(r'^token = "token-for-.*-post"$', post, re.M) and f'location = "{home}/manager/persist-1"' in post
    units = prefix / "lib/systemd/system"
    assert sorted(u.name for u in units.iterdir()) == ["damocles-manager.service", "damocles-post.service",
                                                       "damocles-worker.service"]
    unit = (units / "damocles-worker.service").read_text()
    assert f"ExecStart={prefix}/bin/damocles worker run -c {home}/worker/worker.toml" in unit
    assert "Restart=on-failure" in unit and "LimitNOFILE=1048576" in unit and "TimeoutStopSec=60s" in unit
    assert f"ExecStart={prefix}/bin/damocles manager run --home {home}/manager" in (units / "damocles-manager.service").read_text()
    assert "skipped    enabling the units: systemd is not running on this host" in p.stdout
    assert "damocles: 7 changes" in p.stdout and "next:" in p.stdout

    before = snapshot(prefix)
    again = install("--role", "all", "--prefix", str(prefix), "--binary", str(binary))
    assert again.returncode == 0, again.stderr
    assert "damocles: unchanged: everything was already in place" in again.stdout
    assert not re.search(r"^  (installed|updated|created|enabled)", again.stdout, re.M), again.stdout
    assert snapshot(prefix) == before

    newer = standin(binary.parent / "damocles-2", version="0.0-newer")     # an upgrade replaces the binary only
    up = install("--role", "all", "--prefix", str(prefix), "--binary", str(newer))
    assert up.returncode == 0 and f"updated  {prefix}/bin/damocles" in up.stdout and "damocles: 1 changes" in up.stdout
    assert (home / "worker/worker.toml").read_text() == worker


def test_worker_role_takes_the_managers_address_and_token_and_the_configs_parse(node):
    from appliance.post.config import load_post_config
    from appliance.worker.config import load_worker_config
    prefix, binary = node
    for role in ("worker", "post"):
        p = install("--role", role, "--prefix", str(prefix), "--binary", str(binary),
                    "--manager", "/ip4/10.0.0.1/tcp/1789", "--token", "tok&en#1")
        assert p.returncode == 0, p.stderr
        assert "the manager's address and a write token" in p.stdout
    home = prefix / "var/lib/damocles"
    assert not (home / "manager").exists()
    w = load_worker_config(home / "worker/worker.toml", available_cpus=set(range(64)))
    assert w.manager_url == "http://10.0.0.1:1789/rpc/v0" and w.manager_token == "tok&en#1" and not w.warnings
    assert [t.location for t in w.threads] == [home / "worker/sealing-0", home / "worker/sealing-1"]
    assert w.attached[0].name == "persist-1" and str(w.attached[0].location) == "/mnt/persist-1"
    post = load_post_config(home / "post/post.toml")
    assert post.manager_url == w.manager_url and post.manager_token == "tok&en#1" and not post.warnings


def test_packaged_example_configs_parse():
    from appliance.manager.config import load_config
    from appliance.post.config import load_post_config
    from appliance.worker.config import load_worker_config
    assert not load_config(ROOT / "packaging/sector-manager.cfg").warnings
    assert not load_worker_config(ROOT / "packaging/worker.toml", available_cpus={0}).warnings
    assert not load_post_config(ROOT / "packaging/post.toml").warnings


def test_uninstall_removes_units_and_binary_keeps_homes_then_purge_removes_them(node):
    prefix, binary = node
    assert install("--role", "all", "--prefix", str(prefix), "--binary", str(binary)).returncode == 0
    home = prefix / "var/lib/damocles"
    p = install("--uninstall", "--role", "worker", "--prefix", str(prefix))
    assert p.returncode == 0, p.stderr
    assert not (prefix / "lib/systemd/system/damocles-worker.service").exists()
    assert (prefix / "bin/damocles").exists() and "kept       " + str(prefix / "bin/damocles") in p.stdout   # manager, post use it
    p = install("--uninstall", "--role", "all", "--prefix", str(prefix))
    assert p.returncode == 0, p.stderr
    assert not list((prefix / "lib/systemd/system").iterdir()) and not (prefix / "bin/damocles").exists()
    assert (home / "manager/manager.toml").exists() and (home / "worker/worker.toml").exists() and (home / "post/post.toml").exists()
    assert "--uninstall --purge removes it" in p.stdout
    again = install("--uninstall", "--role", "all", "--prefix", str(prefix))
    assert again.returncode == 0 and "damocles: nothing to remove" in again.stdout
    purge = install("--uninstall", "--purge", "--role", "all", "--prefix", str(prefix))
    assert purge.returncode == 0 and not home.exists()


HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "CapabilityBoundingSet=",
             "AmbientCapabilities=", "ProtectKernelTunables=yes", "ProtectKernelModules=yes", "ProtectControlGroups=yes",
             "RestrictNamespaces=yes", "RestrictSUIDSGID=yes", "LockPersonality=yes", "SystemCallArchitectures=native",
             "SystemCallFilter=@system-service", "UMask=0077")


def directives(unit: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


def test_units_are_hardened_and_write_only_their_roles_directories(tmp_path, node):
    prefix, binary = node
    sealing, persist = tmp_path / "nvme" / "sealing", tmp_path / "persist"
    p = install("--role", "all", "--prefix", str(prefix), "--binary", str(binary), "--sealing-dir", str(sealing),
                "--persist-dir", str(persist))
    assert p.returncode == 0, p.stderr
    home, units = prefix / "var/lib/damocles", prefix / "lib/systemd/system"
    expected_rw = {"manager": [f"{home}/manager"],
                   "post": [f"{home}/post"],
                   "worker": [f"{home}/worker", "-/var/tmp/filecoin-parents", f"-{persist}", "/tmp", f"-{sealing}"]}
    for role, rw in expected_rw.items():
        unit = (units / f"damocles-{role}.service").read_text()
        for line in HARDENING:
            assert line in unit.splitlines(), f"damocles-{role}.service lacks {line}"
        d = directives(unit)
        assert d["ReadWritePaths"] == [" ".join(rw)], d["ReadWritePaths"]
        assert d["User"] == ["damocles"]
        # the worker keeps the shared /var/tmp parent cache; manager and prover get a private /tmp
        assert d.get("PrivateTmp") == (None if role == "worker" else ["yes"])
        # only the manager may lose devices (workers and provers may drive GPUs)
        assert ("PrivateDevices" in d) == (role == "manager")


def test_a_store_under_home_makes_home_read_only_not_hidden(node):
    prefix, binary = node
    store = "/home/damocles-test-absent/persist"       # never created: install.sh only names it in the unit
    p = install("--role", "worker", "--prefix", str(prefix), "--binary", str(binary), "--persist-dir", store)
    assert p.returncode == 0, p.stderr
    d = directives((prefix / "lib/systemd/system/damocles-worker.service").read_text())
    assert d["ProtectHome"] == ["read-only"] and f"-{store}" in d["ReadWritePaths"][0].split()
    assert not os.path.exists("/home/damocles-test-absent")


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed (apt-get install systemd)")
def test_systemd_analyze_scores_every_unit_ok(tmp_path, node):
    prefix, binary = node
    assert install("--role", "all", "--prefix", str(prefix), "--binary", str(binary)).returncode == 0
    for role in ("manager", "post", "worker"):
        unit = prefix / f"lib/systemd/system/damocles-{role}.service"
        p = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)], capture_output=True, text=True,
                           timeout=60)
        score = float(re.search(r"Overall exposure level for damocles-\w+\.service: ([\d.]+)", p.stdout).group(1))
        assert score <= 2.0, f"damocles-{role}.service scores {score}:\n{p.stdout}"


def test_refusals_leave_nothing_behind(tmp_path, node):
    prefix, binary = node
    cases = [
        (["--role", "all", "--prefix", "/proc/damocles-test", "--binary", str(binary)], 1, "cannot write to /proc/damocles-test"),
        (["--role", "worker", "--prefix", str(prefix), "--binary", str(tmp_path / "nothing")], 1, "is not an executable file"),
        (["--role", "worker", "--prefix", str(prefix), "--binary", str(standin(tmp_path / "thawed", frozen=False))], 1,
         "is not the frozen damocles executable"),
        (["--role", "sealer", "--prefix", str(prefix)], 2, "--role must be manager, worker, post or all"),
        (["--role", "all", "--purge", "--prefix", str(prefix)], 2, "--purge goes with --uninstall"),
        (["--uninstall"], 2, "go with --role"),
        (["--role"], 2, "--role needs a value"),
    ]
    for args, code, message in cases:
        p = install(*args)
        assert p.returncode == code and message in p.stderr, (args, p.stdout, p.stderr)
        assert code == 2 or "nothing was installed" in p.stderr
    assert not prefix.exists()


def test_building_with_an_old_python_is_refused_before_anything_is_written(tmp_path):
    checkout = tmp_path / "checkout"          # a checkout without dist/damocles: install.sh must build
    checkout.mkdir()
    shutil.copy(ROOT / "install.sh", checkout / "install.sh")
    shutil.copytree(ROOT / "packaging", checkout / "packaging")
    old = tmp_path / "python3.9"
    old.write_text("#!/bin/sh\nexit 1\n")     # answers the version check like a Python 3.9
    old.chmod(0o755)
    p = install("--role", "worker", "--prefix", str(tmp_path / "prefix"), env={"PYTHON": str(old)},
                script=checkout / "install.sh")
    assert p.returncode == 1 and "building the executable needs Python 3.11 or newer" in p.stderr, p.stderr
    assert not (tmp_path / "prefix").exists() and not (checkout / ".venv").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="enabling units is done as root")
def test_where_systemd_runs_units_are_enabled_once_and_disabled_on_uninstall(tmp_path, node):
    prefix, binary = node
    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "systemctl").write_text(SYSTEMCTL)
    (fake / "systemctl").chmod(0o755)
    state = tmp_path / "systemd-state"
    state.mkdir()
    env = {"DAMOCLES_SYSTEMD_RUN_DIR": str(state), "FAKE_SYSTEMD_STATE": str(state), "PATH": f"{fake}:{os.environ['PATH']}",
           "DAMOCLES_PARENTS_DIR": str(tmp_path / "filecoin-parents")}
    args = ["--role", "worker", "--prefix", str(prefix), "--binary", str(binary), "--user", "root"]
    p = install(*args, env=env)
    assert p.returncode == 0, p.stderr
    # the unit leaves /var/tmp read-only but for the parent cache, which must exist to be writable
    assert (tmp_path / "filecoin-parents").is_dir() and "created    " + str(tmp_path / "filecoin-parents") in p.stdout
    assert "enabled    damocles-worker.service" in p.stdout and "systemctl start damocles-worker" in p.stdout
    unit = prefix / "lib/systemd/system/damocles-worker.service"
    assert "User=root" in unit.read_text()
    calls = (state / "calls").read_text().splitlines()
    assert "daemon-reload" in calls and f"enable --quiet {unit}" in calls    # outside the search path: by its path
    (state / "calls").unlink()
    again = install(*args, env=env)
    assert again.returncode == 0 and "unchanged  damocles-worker.service enabled" in again.stdout
    assert "damocles: unchanged" in again.stdout
    assert (state / "calls").read_text().splitlines() == ["is-enabled --quiet damocles-worker.service"]
    p = install("--uninstall", "--role", "worker", "--prefix", str(prefix), env=env)
    assert p.returncode == 0 and "disabled   damocles-worker.service" in p.stdout
    assert "disable --now damocles-worker.service" in (state / "calls").read_text()
    assert not unit.exists() and not (prefix / "bin/damocles").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not FROZEN.exists(), reason=f"{FROZEN} is not built (build/build.sh)")
def test_the_installed_binary_runs_every_role_from_the_installed_configs(tmp_path):
    prefix = tmp_path / "prefix"
    p = install("--role", "all", "--prefix", str(prefix), "--binary", str(FROZEN))
    assert p.returncode == 0, p.stderr
    bin_, home = prefix / "bin/damocles", prefix / "var/lib/damocles"
    info = json.loads(subprocess.run([str(bin_), "--version", "--json"], capture_output=True, text=True, check=True).stdout)
    assert info["frozen"] is True and info["executable"] == str(bin_) and info["build_time"] and info["commit"]
    port = _free_port()              # what an operator edits: another port than the default 1789
    for cfg, old, new in [(home / "manager/sector-manager.cfg", 'Listen = "127.0.0.1:1789"', f'Listen = "127.0.0.1:{port}"'),
                          (home / "worker/worker.toml", "127.0.0.1:1789", f"127.0.0.1:{port}"),
                          (home / "post/post.toml", "127.0.0.1:1789", f"127.0.0.1:{port}")]:
        cfg.write_text(cfg.read_text().replace(old, new))
    w = home / "worker/worker.toml"
    w.write_text(re.sub(r"^# \[worker.rpc_server\].*$", '[worker.rpc_server]\nhost = "127.0.0.1"\nport = 0', w.read_text(),
                        count=1, flags=re.M))
    env = {**os.environ, "FIL_PROOFS_PARENT_CACHE": str(tmp_path / "parents")}
    procs = []
    try:
        for args, ready in [(["manager", "run", "--home", str(home / "manager")], "listening on"),
                            (["worker", "run", "-c", str(w)], "worker"),
                            (["post", "run", "-c", str(home / "post/post.toml")], "prover")]:
            proc = subprocess.Popen([str(bin_), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            procs.append(proc)
            line = read_line(proc)
            assert line.startswith(ready), (line, proc.stderr.read() if proc.poll() is not None else "")
        deadline = time.monotonic() + 60
        while True:
            listed = subprocess.run([str(bin_), "util", "workers", "list", "--api", f"http://127.0.0.1:{port}",
                                     "--home", str(home / "manager"), "--json"], capture_output=True, text=True)
            if listed.returncode == 0 and json.loads(listed.stdout).get("workers"):
                break
            assert time.monotonic() < deadline, listed.stdout + listed.stderr
            time.sleep(0.5)     # the worker's first WorkerPing; bounded by the deadline
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=60)
    assert all(proc.returncode == 0 for proc in procs), [proc.stderr.read()[-2000:] for proc in procs]


MINIMAL_ROOT = r"""
set -e
root="$1"; bin="$2"
mkdir -p "$root/lib/x86_64-linux-gnu" "$root/lib64" "$root/bin" "$root/tmp" "$root/var/tmp" "$root/dev/shm" "$root/proc"
chmod 1777 "$root/tmp" "$root/var/tmp" "$root/dev/shm"
for l in libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libutil.so.1 libz.so.1; do
  cp -L "/lib/x86_64-linux-gnu/$l" "$root/lib/x86_64-linux-gnu/"
done
cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
cp "$bin" "$root/bin/damocles"
touch "$root/dev/null"
mount --bind /dev/null "$root/dev/null"
mount -t proc proc "$root/proc"
chroot "$root" /bin/damocles --version --json
chroot "$root" /bin/damocles util seal --size 2KiB --json
chroot "$root" /bin/damocles bench pc1 --size 2KiB     # a spawned child re-enters the executable
"""


@pytest.mark.slow
@pytest.mark.skipif(not FROZEN.exists(), reason=f"{FROZEN} is not built (build/build.sh)")
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not Path("/lib64/ld-linux-x86-64.so.2").exists(),
                    reason="needs root, unshare and an x86-64 glibc host to build a chroot")
def test_the_binary_needs_nothing_but_glibc_and_zlib(tmp_path):
    """README's claim: a host needs the glibc the binary was built against (and zlib, which every
    Debian or Ubuntu has), nothing else: no Python, no libraries, no /usr at all."""
    script = tmp_path / "minimal-root.sh"
    script.write_text(MINIMAL_ROOT)
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", str(script), str(tmp_path / "root"),
                        str(FROZEN)], capture_output=True, text=True, timeout=300)   # the mounts end with the namespace
    if p.returncode != 0 and "unshare failed" in p.stderr:
        pytest.skip(f"no mount namespace here: {p.stderr.strip()}")
    assert p.returncode == 0, p.stdout + p.stderr
    assert '"frozen": true' in p.stdout and '"verified": true' in p.stdout and "PC1 peak RSS" in p.stdout
    assert not (tmp_path / "root/usr").exists()


def test_worker_and_post_configs_are_planned_for_the_machine_when_the_planner_can(tmp_path):
    """The stand-in hands `plan` to the real planner (from this checkout)."""
    import sys

    from appliance.post.config import load_post_config
    from appliance.worker.config import load_worker_config
    binary = standin(tmp_path / "damocles-standin")
    binary.write_text(binary.read_text().replace(
        '  *) echo "stand-in',
        f'  "plan "*) PYTHONPATH="{ROOT}" exec "{sys.executable}" -m appliance "$@" ;;\n  *) echo "stand-in'))
    prefix, persist = tmp_path / "prefix", tmp_path / "persist"
    persist.mkdir()
    p = install("--role", "worker", "--prefix", str(prefix), "--binary", str(binary), "--size", "2KiB",
                "--persist-dir", str(persist), "--manager", "/ip4/10.0.0.1/tcp/1789", "--token", "tok")
    assert p.returncode == 0, p.stderr
    assert "planned for this machine at 2KiB" in p.stdout, p.stdout
    home = prefix / "var/lib/damocles"
    w = load_worker_config(home / "worker/worker.toml")
    assert w.manager_url == "http://10.0.0.1:1789/rpc/v0" and w.manager_token == "tok"
    assert w.threads and all(str(t.location).startswith(str(home / "worker/sealing")) for t in w.threads)
    assert "pc1" in w.processors and w.attached[0].location == persist
    # too big for the machine (or no persist store): the commented example, and the reason
    p = install("--role", "post", "--prefix", str(prefix), "--binary", str(binary), "--manager", "/ip4/10.0.0.1/tcp/1789")
    assert p.returncode == 0 and "the commented example: give --persist-dir" in p.stdout, p.stdout
    assert load_post_config(home / "post/post.toml").manager_url == w.manager_url
