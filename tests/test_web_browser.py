"""The status page in a real headless browser (Debian's chromium driven by Selenium through
Debian's chromium-driver; `.ci/run` installs them, and the test skips, saying why, where they are
missing). A manager and a worker run as processes; the worker's external C2 processor fails while
a marker file exists, so both sectors pause at C2 with that error. The page shows the running
pipeline, the paused sectors with their error; the test removes the fault, clicks Resume, and the
manager resumes the thread through the worker's RPC; the sector finishes. The browser logs in as
an operator does, through a one-time link (`Venus.WebLoginCode`, what `damocles manager
login-url` prints), and holds only an HttpOnly cookie. A screenshot of the page is kept in
test-artifacts/web-status.png (git-ignored)."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from appliance.rpc.auth import issue_token, load_or_create_secret
from appliance.rpc.client import RPCClient

from .configs import NO_PROCESSORS, worker_toml
from .conftest import ROOT, damocles_cmd, read_line
from .test_worker_e2e import manager_toml

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium
    HAVE_SELENIUM = bool(selenium.__version__)
except ImportError:
    HAVE_SELENIUM = False

if os.environ.get("DAMOCLES_REQUIRE_BROWSER") == "1" and not (CHROMIUM and CHROMEDRIVER and HAVE_SELENIUM):
    raise RuntimeError("DAMOCLES_REQUIRE_BROWSER=1 (.ci/run) but chromium, chromedriver or selenium is missing")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER and HAVE_SELENIUM),
    reason="the browser test needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver) "
           "and selenium (pip install -e '.[test]'); .ci/run installs them")

ARTIFACTS = ROOT / "test-artifacts"

MANAGER = manager_toml(2, 2, 2, "1s")

# a C2 processor over the vc-processors protocol that fails every task while the marker exists
FAULTY = """
import json, os, sys
sys.path.insert(0, {root!r})
from appliance.worker.tasks import run_task
stage, marker = sys.argv[1], sys.argv[2]
print(f"{{stage}} processor ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    if os.path.exists(marker):
        out = {{"id": req["id"], "err_msg": "injected fault: CUDA out of memory on GPU 0", "output": None}}
    else:
        try:
            out = {{"id": req["id"], "err_msg": None, "output": run_task(stage, req["task"])}}
        except Exception as exc:
            out = {{"id": req["id"], "err_msg": f"{{type(exc).__name__}}: {{exc}}", "output": None}}
    print(json.dumps(out), flush=True)
"""


def _browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,2200"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)


def _log_in(browser, url, admin, perm):
    """Open a one-time login link; the page loads at /ui/ with the session cookie."""
    browser.get(url + admin.call("Venus.WebLoginCode", perm)["Path"])
    _wait("the page after login", lambda: browser.current_url.rstrip("/").endswith("/ui"))


def _wait(what, fn, timeout=120.0, every=0.3):
    from selenium.common.exceptions import WebDriverException
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got = fn()
        except WebDriverException:        # not rendered yet, or re-rendered under our feet
            got = None
        if got:
            return got
        time.sleep(every)   # waiting for a live system and a refreshing page; bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def cluster(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(MANAGER)
    (home / "persist-1").mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = []
    manager = subprocess.Popen(damocles_cmd("manager", "run", "--home", str(home)), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env)
    procs.append(manager)
    line = read_line(manager)
    assert line.startswith("listening on "), line
    url = line.split()[-1]
    secret = load_or_create_secret(home / "secret")
    marker = tmp_path / "fault"
    marker.touch()
    script = tmp_path / "faulty_c2.py"
    script.write_text(FAULTY.format(root=str(ROOT)))
    cfg = tmp_path / "worker.toml"
    # one retry, PC2 not verified; the only processor is the faulty c2 (pc1 and pc2 in the sealing threads)
    cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1",
                               [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1"}], name="w-web",
                               sealing={"max_retries": 1, "seal_interval": "200ms", "verify_after_pc2": None},
                               processors={**NO_PROCESSORS, "c2": [{"bin": sys.executable, "args": [script, "c2", marker]}]}))
    worker = subprocess.Popen(damocles_cmd("worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")),
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "w"), text=True, cwd=ROOT,
                              env=env)
    procs.append(worker)
    yield url, secret, marker, RPCClient(url, issue_token(secret, "admin")), worker
    for p in reversed(procs):
        p.terminate()
        p.wait(timeout=30)


def test_status_page_shows_the_pipeline_and_resumes_a_paused_sector(cluster):
    from selenium.webdriver.common.by import By
    url, secret, marker, admin, worker = cluster
    browser = _browser()
    try:
        # a token in the address is refused outright
        browser.get(f"{url}/ui/?token={issue_token(secret, 'admin')}")
        assert "login-url" in browser.find_element(By.TAG_NAME, "body").text and not browser.get_cookies()
        # the login link: the code leaves the address bar; the cookie is HttpOnly and SameSite=Strict,
        # out of the page's reach, and the page stores nothing
        _log_in(browser, url, admin, "admin")
        assert "code=" not in browser.current_url
        cookie = browser.get_cookie("damocles_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/"
        assert "damocles_session" not in browser.execute_script("return document.cookie")
        assert browser.execute_script("return localStorage.length + sessionStorage.length") == 0
        # a running pipeline: sectors in flight on the worker's threads, and the worker itself
        _wait("sectors in the pipeline", lambda: browser.find_elements(By.CSS_SELECTOR, "#pipeline tr[data-sector]"))
        _wait("the worker", lambda: "w-web" in browser.find_element(By.ID, "workers").text)
        assert "persist-1" in browser.find_element(By.ID, "stores").text
        assert "f01000" in browser.find_element(By.ID, "proving").text
        # both sectors fail C2 and their threads pause: the page lists them with the error
        rows = _wait("paused sectors with their error", lambda: [
            r for r in browser.find_elements(By.CSS_SELECTOR, "#attention tr.failed")
            if "paused (perm)" in r.text and "CUDA out of memory" in r.text])
        name = rows[0].get_attribute("data-sector")
        number = int(name.rsplit("-", 1)[1])
        assert "C1Done" in rows[0].text          # the state the failing step starts from
        assert worker.poll() is None
        # its history, with durations, opens from the sector's link
        browser.find_element(By.CSS_SELECTOR, f'#attention a[data-open="{name}"]').click()
        _wait("the history", lambda: "PC1Done" in browser.find_element(By.ID, "history").text)
        assert "injected fault" in browser.find_element(By.ID, "history").text
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "web-status.png"))
        assert (ARTIFACTS / "web-status.png").stat().st_size > 10_000
        # the fault goes away; Resume goes manager -> worker RPC -> the thread, which redoes C2
        marker.unlink()
        browser.find_element(By.CSS_SELECTOR, f'#attention button.resume[data-sector="{name}"]').click()
        _wait("the resume answer", lambda: '"Resumed":true' in browser.find_element(By.ID, "flash").text, timeout=30)
        done = _wait(f"{name} to finish", lambda: next(
            (s for s in admin.call("Venus.ListSectors", "", 0) if s["ID"]["Number"] == number and s["State"] == "Finished"),
            None), timeout=120)
        assert done["AbortReason"] == ""
        _wait("the page to list it as finished", lambda: any(
            r.get_attribute("data-sector") == name and "Finished" in r.text
            for r in browser.find_elements(By.CSS_SELECTOR, "#recent tr[data-sector]")))
        other = [r.get_attribute("data-sector") for r in browser.find_elements(By.CSS_SELECTOR, "#attention tr.failed")]
        assert name not in other
        browser.save_screenshot(str(ARTIFACTS / "web-status-resumed.png"))
        # log out: the session ends on the manager and the login text comes back
        browser.find_element(By.ID, "logout").click()
        _wait("the login text", lambda: browser.find_element(By.ID, "login").is_displayed())
        assert browser.get_cookie("damocles_session") is None
        browser.refresh()
        _wait("the login text after a reload", lambda: browser.find_element(By.ID, "login").is_displayed())
        # a read login sees the page, but the buttons are refused by the manager
        _log_in(browser, url, admin, "read")
        _wait("the pipeline", lambda: browser.find_element(By.ID, "main").is_displayed())
        if other:
            _wait("the other paused sector", lambda: browser.find_elements(By.CSS_SELECTOR, "#attention button.resume"))
            browser.find_element(By.CSS_SELECTOR, "#attention button.resume").click()
            _wait("the refusal", lambda: "needs 'admin'" in browser.find_element(By.ID, "flash").text, timeout=30)
        # a forged session brings the login text back, with the reason
        browser.delete_all_cookies()
        browser.add_cookie({"name": "damocles_session", "value": "forged", "path": "/"})
        browser.refresh()
        _wait("the login text", lambda: browser.find_element(By.ID, "login").is_displayed())
        assert "unknown" in browser.find_element(By.ID, "login-error").text
    finally:
        browser.quit()
