"""How a browser logs in to the status page without a token in any address or in the page:

1. an operator asks for a one-time login code (`damocles manager login-url`, which calls the
   admin-only `Venus.WebLoginCode`, or `damocles up`, which runs the manager in process): a
   random code that lives CODE_LIFETIME seconds and works once;
2. `GET /ui/login?code=...` trades it for a session: a random id in an `HttpOnly;
   SameSite=Strict` cookie (`Secure` over TLS), and answers 303 to `/ui/`, so the code leaves
   the address bar;
3. the page's requests (`/ui/api/` and `POST /rpc/v0`) carry the cookie; the manager looks the
   session up here.

Codes and sessions live in the manager's memory only: they are worth something only while
this manager runs, a restart (or `damocles manager token --rotate`) ends them all, and nothing
on disk ever holds one. Both tables are bounded (the oldest entry goes first) and keyed by a
digest of the value, so an entry is found without comparing secrets byte by byte."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from typing import Callable

from ..rpc.auth import AuthError, check_permission

COOKIE = "damocles_session"
CODE_LIFETIME = 120.0
DEFAULT_SESSION_LIFETIME = 12 * 3600.0
MAX_CODES = 64
MAX_SESSIONS = 256


class LoginError(AuthError):
    """A code or session that is unknown, used, expired or from before a rotation (an AuthError: the
    RPC server answers it 401 with this message)."""


@dataclass(frozen=True)
class Session:
    perm: str
    identity: str          # what rpc.server.Caller calls this browser: `page:<digest>`
    expires: float         # time.monotonic() deadline
    secret_tag: str        # the secret it was created under: a rotation ends it


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class WebLogin:
    """Login codes and browser sessions of one manager. `secret_tag()` names the current secret
    (a digest of it); codes and sessions made under another one are refused."""

    def __init__(self, secret_tag: Callable[[], str], session_lifetime: float = DEFAULT_SESSION_LIFETIME,
                 code_lifetime: float = CODE_LIFETIME, max_sessions: int = MAX_SESSIONS, max_codes: int = MAX_CODES,
                 clock: Callable[[], float] = time.monotonic):
        if not session_lifetime > 0 or not code_lifetime > 0:
            raise ValueError("session and code lifetimes must be positive seconds")
        self.secret_tag, self.clock = secret_tag, clock
        self.session_lifetime, self.code_lifetime = session_lifetime, code_lifetime
        self.max_sessions, self.max_codes = max_sessions, max_codes
        self._codes: OrderedDict[str, tuple[str, float, str]] = OrderedDict()   # digest -> (perm, expires, secret tag)
        self._sessions: OrderedDict[str, Session] = OrderedDict()               # digest of the cookie value -> Session
        self._lock = threading.Lock()

    def mint_code(self, perm: str = "admin") -> tuple[str, float]:
        """A new one-time code for a session with `perm`, and its lifetime in seconds."""
        check_permission(perm)
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._drop_expired(self._codes, lambda entry: entry[1])
            self._codes[_digest(code)] = (perm, self.clock() + self.code_lifetime, self.secret_tag())
            while len(self._codes) > self.max_codes:
                self._codes.popitem(last=False)
        return code, self.code_lifetime

    def redeem(self, code: str) -> tuple[str, Session]:
        """Trade a code for a new session: (cookie value, session). The code is gone either way."""
        with self._lock:
            entry = self._codes.pop(_digest(code), None)
        if entry is None:
            raise LoginError("this login code is unknown or was used already (a code works once)")
        perm, expires, tag = entry
        if self.clock() >= expires:
            raise LoginError(f"this login code expired (a code lives {self.code_lifetime:g} s)")
        if tag != self.secret_tag():
            raise LoginError("this login code was made before the manager's secret was rotated")
        value = secrets.token_urlsafe(32)
        key = _digest(value)
        session = Session(perm, f"page:{key[:16]}", self.clock() + self.session_lifetime, tag)
        with self._lock:
            self._drop_expired(self._sessions, lambda s: s.expires)
            self._sessions[key] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return value, session

    def session(self, cookie_header: str | None) -> Session | None:
        """The live session a request's Cookie header names; None when it names none; LoginError
        when it names one that is unknown, expired or from before a rotation."""
        value = session_cookie(cookie_header)
        if value is None:
            return None
        key = _digest(value)
        with self._lock:
            found = self._sessions.get(key)
            if found is not None and (self.clock() >= found.expires or found.secret_tag != self.secret_tag()):
                del self._sessions[key]
                raise LoginError("the page's session ended (expired, or the manager's secret was rotated): "
                                 "log in again with a new link from `damocles manager login-url`")
        if found is None:
            raise LoginError("the page's session is unknown (logged out, or the manager restarted): "
                             "log in again with a new link from `damocles manager login-url`")
        return found

    def logout(self, cookie_header: str | None) -> bool:
        value = session_cookie(cookie_header)
        if value is None:
            return False
        with self._lock:
            return self._sessions.pop(_digest(value), None) is not None

    def counts(self) -> tuple[int, int]:
        """(codes, sessions) held now, expired ones included until they are next swept."""
        with self._lock:
            return len(self._codes), len(self._sessions)

    def _drop_expired(self, table: OrderedDict, expires_of) -> None:
        now = self.clock()
        for key in [k for k, v in table.items() if expires_of(v) <= now]:
            del table[key]


def session_cookie(cookie_header: str | None) -> str | None:
    """The value of our session cookie in a Cookie header, if there is one."""
    if not cookie_header:
        return None
    jar = SimpleCookie()
    try:
        jar.load(cookie_header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def set_cookie(value: str, max_age: float, secure: bool) -> str:
    """The Set-Cookie value for a session (an empty value with max_age 0 clears it). Path=/: the
    page's JSON-RPC calls go to /rpc/v0."""
    return (f"{COOKIE}={value}; Path=/; Max-Age={int(max_age)}; HttpOnly; SameSite=Strict"
            + ("; Secure" if secure else ""))
