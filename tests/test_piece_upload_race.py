"""Piece store poisoning: two concurrent uploads of the same CID, one of them bad and held open.
Each upload has its own temporary file, only one upload per CID runs at a time (the other is
answered 409), and the stored file's CommP is its CID whatever the order. A real manager process."""

import http.client
import time
from urllib.parse import urlparse

import pytest

from appliance.proofs.cid import commd_to_cid
from appliance.proofs.commitment import commp_bytes, commp_file
from appliance.rpc.auth import issue_token, load_or_create_secret

from .conftest import read_line
from .test_deals import deals_manager
from .test_worker_e2e import start

pytestmark = pytest.mark.timeout(120)

GOOD = b"the piece the deal is for" * 20
BAD = bytes(len(GOOD))                    # the same length, other bytes
CID = commd_to_cid(commp_bytes(GOOD).commitment)


@pytest.fixture
def manager(tmp_path):
    home = tmp_path / "manager"
    home.mkdir()
    (home / "manager.toml").write_text(deals_manager(1))
    (home / "persist-1").mkdir()
    proc = start(["manager", "run", "--home", str(home)])
    try:
        url = urlparse(read_line(proc).split()[-1])
        yield home, url.hostname, url.port, issue_token(load_or_create_secret(home / "secret"), "write")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def begin_upload(host, port, token, body: bytes, sent: int) -> http.client.HTTPConnection:
    """A PUT of `body` whose first `sent` bytes are sent; the rest is held back."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.putrequest("PUT", f"/piecestore/{CID}")
    conn.putheader("Authorization", f"Bearer {token}")
    conn.putheader("Content-Type", "application/octet-stream")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body[:sent])
    return conn


def finish_upload(conn, body: bytes, sent: int) -> tuple[int, str]:
    conn.send(body[sent:])
    resp = conn.getresponse()
    out = resp.status, resp.read().decode()
    conn.close()
    return out


def upload(host, port, token, body: bytes) -> tuple[int, str]:
    return finish_upload(begin_upload(host, port, token, body, 0), body, 0)


def wait_for_temporary(store, limit=20):
    """The held upload has reached the piece store: its temporary file exists."""
    deadline = time.monotonic() + limit
    while not list(store.glob(f".{CID}.*.tmp")):
        assert time.monotonic() < deadline, "the held upload never started writing"
        time.sleep(0.02)


def stored_cid(store) -> str:
    return commd_to_cid(commp_file(store / CID)[0].commitment)


def test_a_bad_upload_held_open_cannot_poison_a_concurrent_good_one(manager):
    home, host, port, token = manager
    store = home / "pieces"
    bad = begin_upload(host, port, token, BAD, 100)
    wait_for_temporary(store)
    status, text = upload(host, port, token, GOOD)             # concurrent: refused, not interleaved
    assert status == 409 and "in progress" in text, (status, text)
    status, text = finish_upload(bad, BAD, 100)
    assert status == 400 and f"not {CID}" in text, (status, text)
    assert not (store / CID).exists()
    assert upload(host, port, token, GOOD)[0] == 200
    assert stored_cid(store) == CID and (store / CID).read_bytes() == GOOD
    assert not list(store.glob(".*.tmp"))


def test_a_good_upload_held_open_is_not_replaced_by_a_concurrent_bad_one(manager):
    home, host, port, token = manager
    store = home / "pieces"
    good = begin_upload(host, port, token, GOOD, 100)
    wait_for_temporary(store)
    status, text = upload(host, port, token, BAD)
    assert status == 409, (status, text)
    assert finish_upload(good, GOOD, 100)[0] == 200
    assert upload(host, port, token, BAD)[0] == 400             # alone, the bad one is refused by its CommP
    assert stored_cid(store) == CID and (store / CID).read_bytes() == GOOD
    assert not list(store.glob(".*.tmp"))
