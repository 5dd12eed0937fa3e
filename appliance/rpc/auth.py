"""Bearer tokens: JWTs signed (HS256) with the manager's secret, carrying Lotus' "Allow" claim.
Permissions are ordered read < write < sign < admin; a token allows its level and those below.
Workers and provers need write, dashboards read, operator actions admin. `exp` and `nbf` are
checked on every use; the manager reads its secret file again when it changes, so a rotated
secret refuses every old token at once.

The manager's own calls to a worker's RPC carry no permission token: they carry a worker-call
credential (issue_worker_call_token), good for one VenusWorker method on one named worker for at
most 60 s, with an audience (`aud`) that the manager's own API refuses (verify_token), so a
worker that receives one cannot replay it on the manager or on another worker."""

from __future__ import annotations

import ipaddress
import os
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

import jwt

from ..core.files import atomic_write

TOKEN_CACHE_SECONDS = 60.0      # how long a worker trusts the manager's word on a token
TOKEN_CACHE_ENTRIES = 1024

PERMISSIONS = ("read", "write", "sign", "admin")

WORKER_CALL_AUDIENCE = "damocles-worker"    # `aud` of a worker-call credential: never valid on the manager
WORKER_CALL_MAX_TTL = 60
WORKER_CALL_PREFIX = "VenusWorker."


class AuthError(Exception):
    pass


def check_permission(perm: str) -> str:
    if perm not in PERMISSIONS:
        raise ValueError(f"unknown permission {perm!r}: expected one of {', '.join(PERMISSIONS)}")
    return perm


def allows(have: str, need: str) -> bool:
    return PERMISSIONS.index(have) >= PERMISSIONS.index(need)


def load_or_create_secret(path: str | os.PathLike) -> bytes:
    """The manager's signing secret (32 random bytes, hex, mode 0600), created once."""
    p = Path(path)
    if not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
    try:
        secret = bytes.fromhex(p.read_text().strip())
    except ValueError:
        raise AuthError(f"secret file {p} is not hex") from None
    if len(secret) < 32:
        raise AuthError(f"secret file {p} holds {len(secret)} bytes, at least 32 needed")
    return secret


def rotate_secret(path: str | os.PathLike) -> None:
    """Replace the secret with new random bytes (atomically, 0600): every token signed with the
    old one is refused from now on."""
    atomic_write(Path(path), secrets.token_hex(32) + "\n", mode=0o600)


class SecretFile:
    """The manager's secret, read again whenever the file changes (a rotation by
    `damocles manager token --rotate` takes effect on the running manager at the next request)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp = None
        self._secret = load_or_create_secret(self.path)
        self._stamp = self._stat()

    def _stat(self):
        st = os.stat(self.path)
        return st.st_ino, st.st_mtime_ns, st.st_size

    def current(self) -> bytes:
        try:
            stamp = self._stat()
        except OSError as exc:
            raise AuthError(f"secret file {self.path} cannot be read: {exc.strerror or exc}") from None
        with self._lock:
            if stamp != self._stamp:
                self._secret, self._stamp = load_or_create_secret(self.path), stamp
            return self._secret


def secret_bytes(secret: "bytes | SecretFile") -> bytes:
    return secret.current() if isinstance(secret, SecretFile) else secret


def issue_token(secret: "bytes | SecretFile", perm: str, name: str = "", ttl: float | None = None) -> str:
    """A token allowing `perm` (and the levels below); with `ttl`, it expires that many seconds from now."""
    check_permission(perm)
    allow = list(PERMISSIONS[: PERMISSIONS.index(perm) + 1])
    claims = {"Allow": allow}
    if name:
        claims["Name"] = name
    if ttl is not None:
        if not ttl > 0:
            raise ValueError(f"token lifetime must be positive seconds, got {ttl}")
        now = int(time.time())
        claims.update(iat=now, nbf=now, exp=now + int(ttl))
    return jwt.encode(claims, secret_bytes(secret), algorithm="HS256")


def jwt_expiry(token: str) -> int | None:
    """The token's `exp` (Unix seconds), read without verifying it."""
    return jwt.decode(token, options={"verify_signature": False}).get("exp")


def verify_token(secret: "bytes | SecretFile", token: str) -> str:
    """The token's highest permission; AuthError if the token is not one of ours, or is
    outside its `nbf`..`exp` window."""
    try:
        # the audience is looked at below, by name, rather than by PyJWT's generic refusal
        claims = jwt.decode(token, secret_bytes(secret), algorithms=["HS256"], options={"verify_aud": False})
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    if "aud" in claims:
        raise AuthError(f"invalid token: a credential for a worker's RPC (aud {claims['aud']!r}) is not accepted here")
    allow = claims.get("Allow")
    if not isinstance(allow, list) or not allow or not all(a in PERMISSIONS for a in allow):
        raise AuthError("invalid token: no valid Allow claim")
    return max(allow, key=PERMISSIONS.index)


def issue_worker_call_token(secret: "bytes | SecretFile", method: str, worker: str,
                            ttl: float = WORKER_CALL_MAX_TTL) -> str:
    """The credential for one manager-to-worker call: `method` (a VenusWorker method) on the worker
    named `worker`, for `ttl` seconds (at most 60). Claims: aud (the worker audience, refused by
    the manager), act (the method), wkr (the worker's name), iat, nbf, exp, jti. No Allow claim:
    it grants no permission level anywhere."""
    if not method.startswith(WORKER_CALL_PREFIX):
        raise ValueError(f"a worker-call credential is for a {WORKER_CALL_PREFIX}* method, not {method!r}")
    if not worker:
        raise ValueError("a worker-call credential needs the worker's name")
    if not 0 < ttl <= WORKER_CALL_MAX_TTL:
        raise ValueError(f"a worker-call credential lives 0 < ttl <= {WORKER_CALL_MAX_TTL} s, got {ttl}")
    now = int(time.time())
    claims = {"aud": WORKER_CALL_AUDIENCE, "act": method, "wkr": worker,
              "iat": now, "nbf": now, "exp": now + int(ttl), "jti": secrets.token_hex(8)}
    return jwt.encode(claims, secret_bytes(secret), algorithm="HS256")


def is_worker_call_token(token: str) -> bool:
    """Whether `token` says it is a worker-call credential (read without verifying: the caller
    still has it verified before trusting it)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("aud") == WORKER_CALL_AUDIENCE
    except jwt.PyJWTError:
        return False


def verify_worker_call_token(secret: "bytes | SecretFile", token: str) -> dict:
    """The claims of a worker-call credential signed with our secret, inside its nbf..exp window
    and at most WORKER_CALL_MAX_TTL long; AuthError otherwise."""
    try:
        claims = jwt.decode(token, secret_bytes(secret), algorithms=["HS256"], audience=WORKER_CALL_AUDIENCE,
                            options={"require": ["aud", "act", "wkr", "nbf", "exp"]})
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid worker-call credential: {exc}") from None
    act, wkr, nbf, exp = claims["act"], claims["wkr"], claims["nbf"], claims["exp"]
    if not (isinstance(act, str) and act.startswith(WORKER_CALL_PREFIX) and isinstance(wkr, str) and wkr):
        raise AuthError("invalid worker-call credential: act must name a VenusWorker method and wkr a worker")
    if not (isinstance(nbf, (int, float)) and isinstance(exp, (int, float)) and 0 < exp - nbf <= WORKER_CALL_MAX_TTL):
        raise AuthError(f"invalid worker-call credential: it must live at most {WORKER_CALL_MAX_TTL} s")
    return claims


def check_worker_call_scope(claims: dict, method: str, worker: str | None) -> None:
    """The permission model of a worker-call credential, checked by the worker it names: it allows
    exactly its `act` method, only on the worker whose own name is its `wkr`."""
    if claims.get("act") != method:
        raise AuthError(f"this credential allows {claims.get('act')!r} only, not {method}")
    if not worker or claims.get("wkr") != worker:
        raise AuthError(f"this credential is for worker {claims.get('wkr')!r}, this worker is {worker!r}")


class TokenCache:
    """Tokens found valid recently -> their permission, so a worker need not ask the manager on
    every request. Bounded in time (an entry lives `ttl` seconds, never past the token's `exp`,
    and is not used before its `nbf`) and in size (the oldest entries go first)."""

    def __init__(self, ttl: float = TOKEN_CACHE_SECONDS, max_entries: int = TOKEN_CACHE_ENTRIES):
        self.ttl, self.max_entries = ttl, max_entries
        self._entries: OrderedDict[str, tuple[str, float, float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, token: str) -> str | None:
        now_mono, now = time.monotonic(), time.time()
        with self._lock:
            entry = self._entries.get(token)
            if entry is None:
                return None
            perm, until, nbf, exp = entry
            if now_mono >= until or now >= exp or now < nbf:
                del self._entries[token]
                return None
            return perm

    def put(self, token: str, perm: str) -> None:
        try:
            claims = jwt.decode(token, options={"verify_signature": False})   # only read: the caller verified it
        except jwt.PyJWTError:
            return
        exp, nbf = claims.get("exp", float("inf")), claims.get("nbf", float("-inf"))
        if not isinstance(exp, (int, float)) or not isinstance(nbf, (int, float)):
            return
        with self._lock:
            self._entries.pop(token, None)
            self._entries[token] = (perm, time.monotonic() + self.ttl, nbf, exp)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


# What a worker or prover calls on the manager: every method of Damocles' SealerAPI and
# WorkerWdPoStAPI (damocles-manager core/api.go), and AllocateSectorsBatch, which the Rust
# worker's client (damocles-worker src/rpc/sealer/mod.rs) declares as well. A caller without a
# token, from [RPC] AllowNetworks, may call these and nothing else (each at its own level: the
# operator's WdPoStResetJob / WdPoStRemoveJob stay admin-only).
WORKER_FACING_METHODS = frozenset(f"Venus.{m}" for m in (
    # SealerAPI
    "AllocateSector", "AcquireDeals", "AssignTicket", "SubmitPreCommit", "PollPreCommitState", "SubmitPersisted",
    "SubmitPersistedEx", "WaitSeed", "SubmitProof", "PollProofState", "ReportState", "ReportFinalized", "ReportAborted",
    "AllocateSanpUpSector", "SubmitSnapUpProof", "AllocateRebuildSector", "WorkerPing", "StoreReserveSpace",
    "StoreBasicInfo", "AllocateUnsealSector", "AchieveUnsealSector", "AcquireUnsealDest",
    # WorkerWdPoStAPI
    "WdPoStHeartbeatJobs", "WdPoStAllocateJobs", "WdPoStFinishJob", "WdPoStResetJob", "WdPoStRemoveJob", "WdPoStAllJobs",
    # the Rust worker's client
    "AllocateSectorsBatch",
))
# plain HTTP routes a worker uses: deal pieces are read from, and unsealed pieces written to, the piece store
WORKER_FACING_ROUTES = ("/piecestore/",)


class NetworkAllowList:
    """Networks whose requests need no token (Damocles' Rust worker sends none): such a caller
    gets `perm` (write) for the worker-facing methods and routes only; everything else needs a
    token. The manager binds what it allocates to such a caller to its source address."""

    def __init__(self, networks: list[str], perm: str = "write", methods: frozenset[str] = WORKER_FACING_METHODS,
                 routes: tuple[str, ...] = WORKER_FACING_ROUTES):
        try:
            self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        except ValueError as exc:
            raise ValueError(f"invalid network in the token-free list: {exc}") from None
        self.perm = check_permission(perm)
        self.methods, self.routes = methods, routes

    def permission_for(self, address: str) -> str | None:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return None
        return self.perm if any(ip in n for n in self.networks) else None

    def allows_method(self, name: str) -> bool:
        return name in self.methods

    def allows_route(self, prefix: str) -> bool:
        return prefix in self.routes


def cli_token(token: str | None, home, ttl: float | None = None) -> str:
    """The token a CLI command uses: --token, else $DAMOCLES_TOKEN, else an admin token minted
    from the secret of a manager home on this machine (living `ttl` seconds when given: one that
    is sent to a worker must not outlive the command)."""
    token = token or os.environ.get("DAMOCLES_TOKEN")
    if token:
        return token
    secret_file = Path(home) / "secret"
    if not secret_file.exists():
        raise ValueError(f"no token: pass --token, set DAMOCLES_TOKEN, or point --home at a manager home ({secret_file} not found)")
    return issue_token(load_or_create_secret(secret_file), "admin", "cli", ttl=ttl)
