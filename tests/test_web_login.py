"""The status page logs in without a token in any address: a one-time code (minted over the
admin-only Venus.WebLoginCode, or by `damocles manager login-url`) is traded at /ui/login for an
HttpOnly, SameSite=Strict session cookie; the page's requests authenticate by it, cross-site
posts carrying it are refused, and rotation, expiry and logout end it. Clocks are moved by
hand, never slept on."""

from http.client import HTTPConnection
import json
from urllib.parse import urlsplit

import pytest

from appliance.manager.config import ConfigError, load_config, parse_config
from appliance.manager.service import ManagerService, init_home
from appliance.rpc import RPCError
from appliance.rpc.auth import issue_token, rotate_secret
from appliance.rpc.client import RPCClient
from appliance.web.login import COOKIE, WebLogin, LoginError, session_cookie

from .conftest import run_cli
from .test_web import CONFIG, manager  # noqa: F401 (the in-process manager fixture, shared)


def http(url, method, path, headers=None, body=None):
    """(status, headers, body) of one request, redirects not followed."""
    parts = urlsplit(url)
    conn = HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.headers, r.read()
    finally:
        conn.close()


def mint(svc, url, perm="admin") -> str:
    """A login path from the admin-only RPC, as `damocles manager login-url` gets it."""
    return RPCClient(url, issue_token(svc.secret, "admin")).call("Venus.WebLoginCode", perm)["Path"]


def log_in(svc, url, perm="admin", headers=None) -> str:
    """The Cookie header a browser sends after following a login link."""
    status, h, _ = http(url, "GET", mint(svc, url, perm), headers)
    assert status == 303, status
    return f"{COOKIE}={session_cookie(h['Set-Cookie'])}"


def rpc(url, cookie, method, *params, origin=None, ctype="application/json"):
    headers = {"Cookie": cookie, "Content-Type": ctype, **({"Origin": origin} if origin else {})}
    status, _, body = http(url, "POST", "/rpc/v0", headers,
                           json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}).encode())
    return status, json.loads(body)


def test_a_code_logs_in_once_with_a_strict_http_only_cookie(manager):
    svc, url = manager
    path = mint(svc, url)
    assert path.startswith("/ui/login?code=") and "." not in path.split("=", 1)[1]     # a random code, not a JWT
    status, h, _ = http(url, "GET", path)
    assert status == 303 and h["Location"] == "/ui/"           # the code leaves the address bar
    flags = [f.strip() for f in h["Set-Cookie"].split(";")]
    assert flags[0].startswith(f"{COOKIE}=") and len(flags[0]) > len(COOKIE) + 40
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"} <= set(flags) and "Secure" not in flags
    assert h["Cache-Control"] == "no-store" and h["Referrer-Policy"] == "no-referrer"
    cookie = flags[0]
    # the page's reads and its actions authenticate by the cookie alone
    status, _, body = http(url, "GET", "/ui/api/overview", {"Cookie": cookie})
    assert status == 200 and "Sectors" in json.loads(body)
    w = RPCClient(url, issue_token(svc.secret, "write"))
    sid = w.call("Venus.AllocateSector", {})["ID"]
    host = urlsplit(url).netloc
    status, answer = rpc(url, cookie, "Venus.AbortSector", sid, "from the page", origin=f"http://{host}")
    assert status == 200 and "error" not in answer
    assert svc.state.sector(1000, sid["Number"])["state"] == "Aborted"
    # the same code again: refused, no cookie
    status, h, body = http(url, "GET", path)
    assert status == 401 and "Set-Cookie" not in h and b"used already" in body
    # a made-up code, none, or two
    for bad in ("/ui/login?code=nope", "/ui/login", "/ui/login?code=a&code=b"):
        status, h, _ = http(url, "GET", bad)
        assert status in (400, 401) and "Set-Cookie" not in h


def test_an_expired_code_and_an_expired_session_are_refused(manager):
    svc, url = manager
    login, real = svc.web_login, svc.web_login.clock
    path = mint(svc, url)
    login.clock = lambda: real() + 121                      # past the code's 120 s
    status, h, body = http(url, "GET", path)
    assert status == 401 and "Set-Cookie" not in h and b"expired" in body
    login.clock = real
    cookie = log_in(svc, url)
    assert http(url, "GET", "/ui/api/version", {"Cookie": cookie})[0] == 200
    login.clock = lambda: real() + 12 * 3600 + 1             # past the session's lifetime
    status, _, body = http(url, "GET", "/ui/api/version", {"Cookie": cookie})
    assert status == 401 and b"session ended" in body
    login.clock = real
    assert http(url, "GET", "/ui/api/version", {"Cookie": cookie})[0] == 401     # gone for good


def test_secure_flag_over_tls(manager):
    svc, url = manager
    status, h, _ = http(url, "GET", mint(svc, url), {"X-Forwarded-Proto": "https"})   # a TLS proxy in front
    assert status == 303 and "Secure" in [f.strip() for f in h["Set-Cookie"].split(";")]


def test_a_token_in_the_address_no_longer_logs_in(manager):
    svc, url = manager
    admin = issue_token(svc.secret, "admin")
    status, h, body = http(url, "GET", f"/ui/?token={admin}")
    assert status == 400 and b"login-url" in body and "Set-Cookie" not in h
    assert http(url, "GET", f"/ui?token={admin}")[0] == 400
    assert http(url, "GET", f"/ui/api/overview?token={admin}")[0] == 401
    script = http(url, "GET", "/ui/app.js")[2]
    assert b"localStorage" not in script and b"Authorization" not in script
    assert http(url, "GET", "/ui/")[0] == 200                 # the page itself is still public


def test_rotation_ends_sessions_and_codes(manager):
    svc, url = manager
    cookie = log_in(svc, url)
    path = mint(svc, url)
    assert http(url, "GET", "/ui/api/version", {"Cookie": cookie})[0] == 200
    rotate_secret(svc.home / "secret")                      # `damocles manager token --rotate`
    status, _, body = http(url, "GET", "/ui/api/version", {"Cookie": cookie})
    assert status == 401 and b"rotated" in body
    assert rpc(url, cookie, "Venus.ListSectors")[0] == 401
    status, h, body = http(url, "GET", path)
    assert status == 401 and b"rotated" in body and "Set-Cookie" not in h
    assert http(url, "GET", "/ui/api/version", {"Cookie": log_in(svc, url)})[0] == 200   # a new login works


def test_cross_site_posts_with_the_cookie_are_refused(manager):
    svc, url = manager
    cookie = log_in(svc, url)
    sid = RPCClient(url, issue_token(svc.secret, "write")).call("Venus.AllocateSector", {})["ID"]
    before = svc.state.sector(1000, sid["Number"])
    status, answer = rpc(url, cookie, "Venus.AbortSector", sid, "csrf", origin="http://evil.example")
    assert status == 403 and "origin" in answer["error"]["message"]
    status, answer = rpc(url, cookie, "Venus.AbortSector", sid, "csrf", ctype="text/plain")   # fetch no-cors
    assert status == 415
    assert svc.state.sector(1000, sid["Number"]) == before
    # logout too is a same-origin JSON POST
    status, _, _ = http(url, "POST", "/ui/logout", {"Cookie": cookie, "Content-Type": "text/plain"}, b"{}")
    assert status == 415
    status, _, _ = http(url, "POST", "/ui/logout", {"Cookie": cookie, "Content-Type": "application/json",
                                                    "Origin": "http://evil.example"}, b"{}")
    assert status == 403
    assert http(url, "GET", "/ui/api/version", {"Cookie": cookie})[0] == 200


def test_logout_ends_the_session(manager):
    svc, url = manager
    cookie = log_in(svc, url)
    status, h, body = http(url, "POST", "/ui/logout", {"Cookie": cookie, "Content-Type": "application/json"}, b"{}")
    assert status == 200 and json.loads(body) == {"LoggedOut": True}
    flags = [f.strip() for f in h["Set-Cookie"].split(";")]
    assert flags[0] == f"{COOKIE}=" and "Max-Age=0" in flags and "HttpOnly" in flags
    status, _, body = http(url, "GET", "/ui/api/version", {"Cookie": cookie})
    assert status == 401 and b"unknown" in body


def test_the_cookie_counts_only_for_the_page(manager):
    svc, url = manager
    read_cookie = log_in(svc, url, "read")
    assert http(url, "GET", "/ui/api/version", {"Cookie": read_cookie})[0] == 200
    status, answer = rpc(url, read_cookie, "Venus.AbortSector", {"Miner": 1000, "Number": 1}, "x")
    assert status == 403 and "needs 'admin'" in answer["error"]["message"]
    admin_cookie = log_in(svc, url)
    for path in ("/metrics", "/piecestore/baga6ea4seaqao7s73y24kcutaosvacpdjgfe5pw76ooefnyqw4ynr3d2y6x2mpq"):
        assert http(url, "GET", path, {"Cookie": admin_cookie})[0] == 401
    # a session cannot mint itself a new login (its lifetime stays bounded); weaker tokens cannot at all
    status, answer = rpc(url, admin_cookie, "Venus.WebLoginCode", "admin")
    assert "error" in answer and "not the page's session" in answer["error"]["message"]
    with pytest.raises(RPCError, match="needs 'admin'"):
        RPCClient(url, issue_token(svc.secret, "write")).call("Venus.WebLoginCode", "read")
    with pytest.raises(RPCError, match="perm"):
        RPCClient(url, issue_token(svc.secret, "admin")).call("Venus.WebLoginCode", "root")


def test_codes_and_sessions_are_bounded():
    now = [0.0]
    login = WebLogin(lambda: "tag", session_lifetime=100, max_sessions=3, max_codes=2, clock=lambda: now[0])
    codes = [login.mint_code("read")[0] for _ in range(5)]
    assert login.counts()[0] == 2
    with pytest.raises(LoginError):                 # the oldest went first
        login.redeem(codes[0])
    cookies = [f"{COOKIE}={login.redeem(login.mint_code()[0])[0]}" for _ in range(5)]
    assert login.counts()[1] == 3
    assert login.session(cookies[-1]).perm == "admin"
    with pytest.raises(LoginError):
        login.session(cookies[0])
    now[0] = 121                                    # expired ones (codes live 120 s) are swept on the next login
    login.redeem(login.mint_code()[0])
    assert login.counts() == (0, 1)
    assert login.session("other=1") is None and login.session(None) is None


def test_login_url_command_prints_a_working_link(manager):
    svc, url = manager
    p = run_cli("manager", "login-url", "--home", str(svc.home), "--api", url + "/rpc/v0", "--perm", "read")
    assert p.returncode == 0, p.stderr
    link = p.stdout.strip()
    assert link.startswith(f"{url}/ui/login?code=") and "works once" in p.stderr and "." not in link.split("=", 1)[1]
    status, h, _ = http(url, "GET", link[len(url):])
    assert status == 303
    cookie = f"{COOKIE}={session_cookie(h['Set-Cookie'])}"
    assert http(url, "GET", "/ui/api/version", {"Cookie": cookie})[0] == 200
    assert svc.web_login.session(cookie).perm == "read"
    p = run_cli("manager", "login-url", "--home", str(svc.home / "nowhere"), "--api", url)
    assert p.returncode != 0 and "no token" in p.stderr


def test_session_lifetime_is_configured(tmp_path):
    with pytest.raises(ConfigError, match=r"\[RPC\]\.WebSessionLifetime"):
        parse_config({"RPC": {"WebSessionLifetime": "10s"}})
    with pytest.raises(ConfigError, match=r"\[RPC\]\.WebSessionLifetime"):
        parse_config({"RPC": {"WebSessionLifetime": "soon"}})
    home = tmp_path / "m"
    init_home(home, CONFIG)
    config = load_config(home / "sector-manager.cfg")
    config.web_session_lifetime = parse_config({"RPC": {"WebSessionLifetime": "2h"}}).web_session_lifetime
    svc = ManagerService(home, config)
    host, port = svc.start("127.0.0.1:0")
    try:
        url = f"http://{host}:{port}"
        status, h, _ = http(url, "GET", mint(svc, url))
        assert status == 303 and "Max-Age=7200" in h["Set-Cookie"]
    finally:
        svc.stop()
