"""The data stages over vc-processors: add_pieces, tree_d, transfer and unseal.

Each stage gets a task line written by hand in Damocles' shape and fed to `damocles processor
<stage>` as a separate program, and every field of the answer is checked. The shapes follow
Damocles' damocles-worker/vc-processors/src/builtin/tasks.rs at commit
4235a89557219de436bba441e727af3a42f903f0 (AddPieces, Piece, PieceFile with rename_all =
"camelCase", TreeD, Transfer / TransferRoute / TransferItem / TransferOption / TransferStoreInfo,
Unseal) and filecoin-proofs' PieceInfo {commitment: [u8; 32], size: UnpaddedBytesAmount}
(rust-fil-proofs 87348a7, filecoin-proofs/src/types/piece_info.rs). The zero-piece commitments
are the ALL_ZERO_PIECE_COMMS table of vc-processors' builtin/processors/piece.rs (same commit).

Then a worker drives the four stages as external processors (our processor behind a tap that
logs the traffic) through to a sealed, persisted and unsealed sector."""

import functools
import http.server
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from appliance.core.proof_types import seal_proof
from appliance.core.sector import SectorID
from appliance.proofs.addpiece import add_pieces, build_tree_d
from appliance.proofs.commitment import commp_file
from appliance.proofs.seal import seal_sector
from appliance.worker.external import own_command

from .conftest import ROOT

P2K = seal_proof("StackedDrg2KiBV1_1")
# vc-processors builtin/processors/piece.rs ALL_ZERO_PIECE_COMMS[0], [1], [3], [4]: 128, 256, 1024, 2048 bytes
ZERO_128 = list(bytes.fromhex("3731bb99ac689f66eef5973e4a94da188f4ddcae580724fc6f3fd60dfd488333"))
ZERO_256 = list(bytes.fromhex("642a607ef886b004bf2c1978463ae1d4693ac0f410eb2d1b7a47fe205e5e750f"))
ZERO_1K = list(bytes.fromhex("1f7ac9595510e09ea41c460b176430bb322cd6fb412ec57cb17d989a4310372f"))
ZERO_2K = list(bytes.fromhex("fc7e928296e516faade986b28f92d44a4f24b935485223376a799027bc18f833"))
# prover_id of miner f01000: the ID address payload, uvarint(1000) = e8 07, zero-filled to 32 bytes
PROVER_1000 = [0xE8, 0x07] + [0] * 30


def processor(stage: str, *lines: str, env: dict | None = None, args: tuple = ()) -> list[dict]:
    """Feed request lines to `damocles processor <stage>` (a separate program); its answers by id."""
    p = subprocess.run([*own_command(stage), *args], input="".join(line + "\n" for line in lines), capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=300)
    out = p.stdout.splitlines()
    assert p.returncode == 0 and out[0] == f"{stage} processor ready", p.stderr
    answers = [json.loads(x) for x in out[1:]]
    assert all(set(a) == {"id", "err_msg", "output"} for a in answers), answers
    return sorted(answers, key=lambda a: a["id"])


@pytest.fixture(scope="module")
def piece_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pieces")
    big, small = d / "big.bin", d / "small.bin"
    big.write_bytes(bytes(range(256)) + b"piece one" * 10)      # 346 bytes: a 512-byte piece (508 unpadded)
    small.write_bytes(b"the second piece")                     # 16 bytes: a 128-byte piece (127 unpadded)
    return big, small


def test_add_pieces_task_line(piece_files, tmp_path):
    big, small = piece_files
    staged, cc_staged = tmp_path / "staged", tmp_path / "cc-staged"
    (tmp_path / "served").mkdir()
    (tmp_path / "served" / "big").write_bytes(big.read_bytes())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "served")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/big"
    try:
        # the small piece first: pledge pieces of 128 and 256 bytes align the big one at 512, one of 1024 fills the sector
        line = ('{"id": 1, "task": {"seal_proof_type": "StackedDrg2KiBV1_1", "pieces": ['
                '{"piece_file": {"local": "%s"}, "payload_size": 16, "piece_size": 127}, '
                '{"piece_file": "pledge", "payload_size": 0, "piece_size": 127}, '
                '{"piece_file": "pledge", "payload_size": 0, "piece_size": 254}, '
                '{"piece_file": {"url": "%s"}, "payload_size": 346, "piece_size": 508}, '
                '{"piece_file": "pledge", "payload_size": 0, "piece_size": 1016}], '
                '"staged_filepath": "%s"}}') % (small, url, staged)
        cc = '{"id": 2, "task": {"seal_proof_type": "StackedDrg2KiBV1_1", "pieces": [], "staged_filepath": "%s"}}' % cc_staged
        bad = [('{"id": 3, "task": {"seal_proof_type": "StackedDrg2KiBV1_1", "pieces": [{"piece_file": {"Local": "%s"}, '
                '"payload_size": 16, "piece_size": 127}], "staged_filepath": "%s"}}' % (small, tmp_path / "x"),
                "task.pieces[0].piece_file"),
               ('{"id": 4, "task": {"seal_proof_type": "StackedDrg2KiBV1_1", "pieces": [{"piece_file": "pledge", '
                '"payload_size": 0, "piece_size": 128}], "staged_filepath": "%s"}}' % (tmp_path / "x"),
                "task.pieces[0].piece_size: 128 is not an unpadded piece size"),
               ('{"id": 5, "task": {"seal_proof_type": "StackedDrg2KiBV1_1", "pieces": [{"piece_file": {"local": "%s"}, '
                '"payload_size": 200, "piece_size": 127}], "staged_filepath": "%s"}}' % (small, tmp_path / "x"),
                "task.pieces[0].payload_size: 200 is larger than piece_size 127"),
               ('{"id": 6, "task": {"seal_proof_type": "StackedDrg2KiBV1_1", "pieces": [{"piece_file": {"local": "%s"}, '
                '"payload_size": 100, "piece_size": 127}], "staged_filepath": "%s"}}' % (small, tmp_path / "x"),
                "task.pieces[0].payload_size"),
               ('{"id": 7, "task": {"seal_proof_type": "StackedDrg2KiBV1_1", "pieces": [{"piece_file": "pledge", '
                '"payload_size": 0, "piece_size": 2032}, {"piece_file": "pledge", "payload_size": 0, "piece_size": 127}], '
                '"staged_filepath": "%s"}}' % (tmp_path / "x"), "task.pieces: 2176 padded bytes do not fit")]
        answers = processor("add_pieces", line, cc, *(b for b, _ in bad))
    finally:
        server.shutdown()
        server.server_close()
    assert answers[0] == {"id": 1, "err_msg": None, "output": [
        {"commitment": list(commp_file(small)[0].commitment), "size": 127}, {"commitment": ZERO_128, "size": 127},
        {"commitment": ZERO_256, "size": 254}, {"commitment": list(commp_file(big)[0].commitment), "size": 508},
        {"commitment": ZERO_1K, "size": 1016}]}
    # the staged file is the one our engine lays out with its own alignment
    add_pieces(P2K.size, [small, big], tmp_path / "ours")
    assert staged.read_bytes() == (tmp_path / "ours").read_bytes()
    assert answers[1] == {"id": 2, "err_msg": None, "output": [{"commitment": ZERO_2K, "size": 2032}]}
    assert cc_staged.read_bytes() == bytes(2048)
    for answer, (_, msg) in zip(answers[2:], bad):
        assert answer["output"] is None and msg in answer["err_msg"], answer
    assert not (tmp_path / "x").exists()         # a refused task leaves no staged file


@pytest.mark.slow
def test_add_pieces_and_tree_d_of_an_8mib_sector_stream_pieces_in_chunks(tmp_path):
    """A 2MiB piece is written and hashed in 1MiB chunks: its commitment, the staged file and
    tree_d are those of our engine, which holds the piece whole."""
    piece = tmp_path / "piece"
    piece.write_bytes(os.urandom(1_500_000))             # a 2MiB piece: 2080768 unpadded bytes
    p8m = seal_proof("StackedDrg8MiBV1_1")
    line = json.dumps({"id": 1, "task": {"seal_proof_type": p8m.name, "pieces": [
        {"piece_file": {"local": str(piece)}, "payload_size": 1_500_000, "piece_size": 2080768},
        {"piece_file": "pledge", "payload_size": 0, "piece_size": 2080768},
        {"piece_file": "pledge", "payload_size": 0, "piece_size": 4161536}], "staged_filepath": str(tmp_path / "staged")}})
    (tmp_path / "cache").mkdir()
    tree = json.dumps({"id": 2, "task": {"registered_proof": p8m.name, "staged_file": str(tmp_path / "staged"),
                                         "cache_dir": str(tmp_path / "cache")}})
    from appliance.proofs.commitment import zero_comm
    assert processor("add_pieces", line)[0]["output"] == [
        {"commitment": list(commp_file(piece)[0].commitment), "size": 2080768},
        {"commitment": list(zero_comm(2 << 20)), "size": 2080768}, {"commitment": list(zero_comm(4 << 20)), "size": 4161536}]
    assert processor("tree_d", tree)[0]["output"] is True
    ours = add_pieces(p8m.size, [piece], tmp_path / "ours")
    assert (tmp_path / "staged").read_bytes() == (tmp_path / "ours").read_bytes()
    (tmp_path / "ours-cache").mkdir()
    comm_d = build_tree_d(p8m.size, tmp_path / "ours", tmp_path / "ours-cache", [s.info for s in ours])
    assert (tmp_path / "cache" / "sc-02-data-tree-d.dat").read_bytes() == \
        (tmp_path / "ours-cache" / "sc-02-data-tree-d.dat").read_bytes()
    assert (tmp_path / "cache" / "sc-02-data-tree-d.dat").read_bytes()[-32:] == comm_d


def test_tree_d_task_line(piece_files, tmp_path):
    big, small = piece_files
    infos = add_pieces(P2K.size, [big, small], tmp_path / "staged")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cc-cache").mkdir()
    (tmp_path / "cc-staged").write_bytes(bytes(2048))
    lines = ['{"id": 1, "task": {"registered_proof": "StackedDrg2KiBV1_1", "staged_file": "%s", "cache_dir": "%s"}}'
             % (tmp_path / "staged", tmp_path / "cache"),
             '{"id": 2, "task": {"registered_proof": "StackedDrg2KiBV1_1", "staged_file": "%s", "cache_dir": "%s"}}'
             % (tmp_path / "cc-staged", tmp_path / "cc-cache"),
             '{"id": 3, "task": {"registered_proof": "StackedDrg2KiBV1", "staged_file": "%s", "cache_dir": "%s"}}'
             % (tmp_path / "nope", tmp_path / "cache"),
             '{"id": 4, "task": {"registered_proof": "StackedDrg2KiB", "staged_file": "%s", "cache_dir": "%s"}}'
             % (tmp_path / "staged", tmp_path / "cache")]
    answers = processor("tree_d", *lines)
    assert answers[0] == {"id": 1, "err_msg": None, "output": True}
    assert answers[1] == {"id": 2, "err_msg": None, "output": True}
    assert "task.staged_file" in answers[2]["err_msg"] and answers[2]["output"] is None
    assert "task.registered_proof" in answers[3]["err_msg"]
    # rust-fil-proofs' name (StoreConfig::data_path(dir, "tree-d")), the whole binary tree: leaves first, root last
    tree = (tmp_path / "cache" / "sc-02-data-tree-d.dat").read_bytes()
    assert len(tree) == (2 * 64 - 1) * 32 and tree[:2048] == (tmp_path / "staged").read_bytes()
    (tmp_path / "ours").mkdir()
    comm_d = build_tree_d(P2K.size, tmp_path / "staged", tmp_path / "ours", [s.info for s in infos])
    assert tree == (tmp_path / "ours" / "sc-02-data-tree-d.dat").read_bytes() and tree[-32:] == comm_d
    cc_tree = (tmp_path / "cc-cache" / "sc-02-data-tree-d.dat").read_bytes()
    assert len(cc_tree) == 4064 and list(cc_tree[-32:]) == ZERO_2K and cc_tree[-96:-64] == bytes(ZERO_1K)


def test_transfer_task_line(tmp_path):
    local, store = tmp_path / "local", tmp_path / "persist-1"
    (local / "cache" / "s-t01000-1").mkdir(parents=True)
    (local / "sealed").mkdir()
    (local / "sealed" / "s-t01000-1").write_bytes(b"replica" * 300)
    for f in ("p_aux", "t_aux"):
        (local / "cache" / "s-t01000-1" / f).write_bytes(f.encode() * 10)
    (store / "sealed").mkdir(parents=True)
    (store / "sealed" / "s-t01000-1").write_bytes(b"an older copy")           # replaced
    stores = '"stores": {"persist-1": {"name": "persist-1", "meta": {"ReadOnly": "false"}}}'
    line = ('{"id": 1, "task": {%s, "routes": ['
            '{"src": {"store_name": null, "uri": "%s"}, "dest": {"store_name": "persist-1", "uri": "%s"}, "opt": null}, '
            '{"src": {"store_name": null, "uri": "%s"}, "dest": {"store_name": "persist-1", "uri": "%s"}, '
            '"opt": {"is_dir": true, "allow_link": false}}, '
            '{"src": {"store_name": "persist-1", "uri": "%s"}, "dest": {"store_name": null, "uri": "%s"}, '
            '"opt": {"is_dir": false, "allow_link": true}}]}}') % (
        stores, local / "sealed" / "s-t01000-1", store / "sealed" / "s-t01000-1", local / "cache" / "s-t01000-1",
        store / "cache" / "s-t01000-1", store / "sealed" / "s-t01000-1", tmp_path / "linked" / "sealed")
    relative = ('{"id": 2, "task": {%s, "routes": [{"src": {"store_name": null, "uri": "sealed/s-t01000-1"}, '
                '"dest": {"store_name": "persist-1", "uri": "%s"}, "opt": null}]}}') % (stores, tmp_path / "y")
    unknown = ('{"id": 3, "task": {%s, "routes": [{"src": {"store_name": null, "uri": "%s"}, '
               '"dest": {"store_name": "persist-2", "uri": "%s"}, "opt": null}]}}') % (stores, local / "sealed", tmp_path / "y")
    answers = processor("transfer", line, relative, unknown)
    assert answers[0] == {"id": 1, "err_msg": None, "output": True}
    assert (store / "sealed" / "s-t01000-1").read_bytes() == b"replica" * 300
    assert sorted(p.name for p in (store / "cache" / "s-t01000-1").iterdir()) == ["p_aux", "t_aux"]
    assert (store / "cache" / "s-t01000-1" / "t_aux").read_bytes() == b"t_aux" * 10
    link = tmp_path / "linked" / "sealed"
    assert link.is_symlink() and os.readlink(link) == str(store / "sealed" / "s-t01000-1")
    assert "task.routes[0].src.uri: sealed/s-t01000-1 is relative" in answers[1]["err_msg"]
    assert "task.routes[0].dest.store_name: 'persist-2'" in answers[2]["err_msg"]
    assert not (tmp_path / "y").exists()
    # DISABLE_LINK or --disable-link, as Damocles' `processor transfer` reads them: a copy instead of a link
    assert processor("transfer", line, env={"DISABLE_LINK": "true"})[0]["output"] is True
    assert not link.is_symlink() and link.read_bytes() == b"replica" * 300
    link.unlink()
    assert processor("transfer", line, args=("--disable-link",))[0]["output"] is True
    assert not link.is_symlink() and link.read_bytes() == b"replica" * 300
    assert processor("transfer", line, env={"DISABLE_LINK": "false"})[0]["output"] is True and link.is_symlink()


def test_unseal_task_line(piece_files, tmp_path):
    big, small = piece_files
    r = seal_sector(P2K, SectorID(1000, 1), bytes([7]) * 32, bytes([1]) * 32, tmp_path / "seal", [big, small])
    task = {"registered_proof": "StackedDrg2KiBV1_1", "prover_id": PROVER_1000, "sector_id": 1, "comm_d": list(r.comm_d),
            "ticket": [7] * 32, "cache_dir": str(r.sector_dir / "cache"), "sealed_file": str(r.sector_dir / "sealed")}
    # big at unpadded 0 (its 346 payload bytes), small at padded 512 = unpadded 508
    lines = [json.dumps({"id": 1, "task": {**task, "unsealed_output": str(tmp_path / "big"), "offset": 0, "num_bytes": 346}}),
             json.dumps({"id": 2, "task": {**task, "unsealed_output": str(tmp_path / "small"), "offset": 508, "num_bytes": 16}}),
             json.dumps({"id": 3, "task": {**task, "unsealed_output": str(tmp_path / "x"), "offset": 5, "num_bytes": 16}}),
             json.dumps({"id": 4, "task": {**task, "prover_id": [0x80] * 32, "unsealed_output": str(tmp_path / "x"),
                                           "offset": 0, "num_bytes": 16}}),
             json.dumps({"id": 5, "task": {**task, "unsealed_output": str(tmp_path / "x"), "offset": 0, "num_bytes": 2033}})]
    answers = processor("unseal", *lines)
    assert answers[0] == {"id": 1, "err_msg": None, "output": 346}
    assert answers[1] == {"id": 2, "err_msg": None, "output": 16}
    assert (tmp_path / "big").read_bytes() == big.read_bytes() and (tmp_path / "small").read_bytes() == small.read_bytes()
    assert "task.offset: 5 is not at the start of an fr32 quad" in answers[2]["err_msg"]
    assert "task.prover_id" in answers[3]["err_msg"]
    assert "task.num_bytes: 2033" in answers[4]["err_msg"]
    assert not (tmp_path / "x").exists()
    # a wrong ticket: the key is not the replica's, and what comes off it is not fr32 data
    wrong = processor("unseal", json.dumps({"id": 1, "task": {**task, "ticket": [8] * 32, "unsealed_output": str(tmp_path / "w"),
                                                              "offset": 508, "num_bytes": 16}}))
    assert wrong[0]["output"] is None and "does not decode with this prover_id, sector_id, ticket" in wrong[0]["err_msg"]
    assert not (tmp_path / "w").exists()


def test_synth_proof_has_no_processor():
    p = subprocess.run(own_command("synth_proof"), capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and "no builtin processor for stage 'synth_proof'" in p.stderr


# ----------------------------------------------------------------------- the worker drives them

def _tap(stage: str) -> dict:
    return {"bin": str(Path(os.sys.executable)), "args": [str(ROOT / "tests" / "processor_tap.py"), stage],
            "stable_wait": "60s"}


def _traffic(taps: Path, stage: str) -> list[tuple[str, dict]]:
    f = taps / f"{stage}.log"
    return [(line[0], json.loads(line[2:])) for line in f.read_text().splitlines()] if f.exists() else []


@pytest.mark.timeout(600)
def test_worker_seals_persists_and_unseals_through_external_data_processors(tmp_path, piece_files):
    from appliance.proofs.cid import commd_to_cid
    from appliance.proofs.commitment import comm_d_from_pieces
    from appliance.rpc.auth import issue_token, load_or_create_secret
    from appliance.rpc.client import RPCClient
    from .configs import worker_toml
    from .conftest import read_line, run_cli
    from .configs import manager_toml
    from .test_worker_e2e import start

    big, small = piece_files
    home, taps = tmp_path / "manager", tmp_path / "taps"
    home.mkdir()
    taps.mkdir()
    # deals start 2 × SealingEpochs after their import: 600 s at 100 ms epochs, ample for a loaded
    # machine to start the worker and its seven processors before AcquireDeals skips them as too soon
    (home / "manager.toml").write_text(manager_toml(2, 1, 1, None, pre_wait=None, miner={"Sector": {
        "EnableDeals": True, "SealingEpochs": 3000}}, config={"Common": {"PieceStores": [{"Name": "pieces-1", "Path": "pieces"}]}}))
    (home / "persist-1").mkdir()
    manager = start(["manager", "run", "--home", str(home)])
    worker = None
    try:
        url = read_line(manager).split()[-1]
        cli = ["--api", url, "--home", str(home)]
        deals = [json.loads(run_cli("util", "piece", "import", str(f), "--miner", "1000", *cli, "--json", check=True).stdout)
                 for f in (big, small)]
        secret = load_or_create_secret(home / "secret")
        admin = RPCClient(url, issue_token(secret, "admin"))
        cfg = tmp_path / "worker.toml"
        threads = [{"location": tmp_path / "t0"}, {"location": tmp_path / "t1", "plan": "unseal"}]
        cfg.write_text(worker_toml(url, issue_token(secret, "write"), home / "persist-1", threads,
                                   sealing={"enable_deals": True}, worker={"unseal_output_dirs": [str(tmp_path / "out")]},
                                   processors={s: [_tap(s)] for s in ("add_pieces", "tree_d", "transfer", "unseal")}))
        (tmp_path / "out").mkdir()
        worker = start(["worker", "run", "-c", str(cfg), "--parent-cache", str(tmp_path / "parents")],
                       {"TAP_LOG_DIR": str(taps)})
        deadline = time.monotonic() + 240
        while True:       # sector 1 takes both deals, sector 2 is CC
            listed = admin.call("Venus.ListSectors", "", 0)
            if len(listed) == 2 and all(s["Finalized"] for s in listed):
                break
            assert worker.poll() is None, worker.stderr.read()
            assert time.monotonic() < deadline, listed
            time.sleep(0.3)   # polling a live system; bounded by the deadline
        assert all(s["State"] == "Finished" and s["AbortReason"] == "" for s in listed), listed
        on_chain = {s["number"]: s for s in admin.call("Venus.DevnetSectors", 1000)}
        for f, d in ((big, deals[0]), (small, deals[1])):
            out = tmp_path / "out" / f"unsealed-{f.name}"
            task = json.loads(run_cli("util", "sectors", "unseal", "1000-1", "--piece", d["PieceCID"], "--dest", f"file://{out}",
                                      "--wait", "120", *cli, "--json", check=True).stdout)
            assert task["State"] == "done" and out.read_bytes() == f.read_bytes(), task
    finally:
        for p in (worker, manager):
            if p is not None:
                p.terminate()
                p.wait(timeout=30)
    infos = [commp_file(f)[0] for f in (big, small)]
    assert on_chain[1]["unsealed_cid"] == commd_to_cid(comm_d_from_pieces(infos, 2048))
    assert on_chain[2]["unsealed_cid"] == commd_to_cid(bytes(ZERO_2K))

    # what went over the protocol: every task answered without error, in Damocles' shapes
    add = _traffic(taps, "add_pieces")
    sent = [t["task"] for d, t in add if d == ">"]
    assert [t["err_msg"] for d, t in add if d == "<"] == [None, None]
    deal_task = next(t for t in sent if t["pieces"])
    assert [(p["piece_file"] if p["piece_file"] == "pledge" else "file", p["piece_size"]) for p in deal_task["pieces"]] == \
        [("file", 508), ("file", 127), ("pledge", 127), ("pledge", 254), ("pledge", 1016)]
    assert {t["seal_proof_type"] for t in sent} == {"StackedDrg2KiBV1_1"} and any(t["pieces"] == [] for t in sent)
    tree_d = _traffic(taps, "tree_d")
    assert [t["output"] for d, t in tree_d if d == "<"] == [True, True]
    transfer = _traffic(taps, "transfer")
    assert [t["output"] for d, t in transfer if d == "<"] == [True, True]
    routes = [r for d, t in transfer if d == ">" for r in t["task"]["routes"]]
    assert {Path(r["dest"]["uri"]).name for r in routes} >= {"s-t01000-1", "s-t01000-2", "p_aux", "t_aux"}
    assert all(r["dest"]["store_name"] == "persist-1" and r["src"]["store_name"] is None for r in routes)
    assert (home / "persist-1" / "cache" / "s-t01000-2" / "p_aux").is_file()
    unseal = _traffic(taps, "unseal")
    assert [(t["task"]["offset"], t["task"]["num_bytes"]) for d, t in unseal if d == ">"] == [(0, 346), (508, 16)]
    assert [t["output"] for d, t in unseal if d == "<"] == [346, 16]


# ------------------------------------------------------- the worker checks every answer it gets

class _Ctx:
    """A plan's context whose external processor is `answer(task)`: the stage's checks, without a process."""

    def __init__(self, answer, attached=()):
        self.answer, self.attached, self.sent = answer, attached, []

    def external(self, stage):
        return True

    def run_task(self, stage, task):
        self.sent.append(task)
        return self.answer(task)


def _builtin_then(change):
    """The builtin runner's answer, then `change(task, output)` spoils it."""
    from appliance.worker.stage_data import run

    def answer(task):
        return change(task, run(_stage_of(task), json.loads(json.dumps(task))))
    return answer


def _stage_of(task):
    return "add_pieces" if "pieces" in task else "tree_d" if "staged_file" in task else "transfer" if "routes" in task \
        else "unseal"


def test_worker_refuses_add_pieces_answers_that_do_not_match(piece_files, tmp_path):
    from appliance.worker.failure import Perm
    from appliance.worker.stage_data import add_pieces_stage
    from appliance.proofs.cid import commd_to_cid
    big, small = piece_files
    deals = [{"id": 1, "piece_cid": commd_to_cid(commp_file(big)[0].commitment), "piece_size": 512},
             {"id": 2, "piece_cid": commd_to_cid(commp_file(small)[0].commitment), "piece_size": 128}]
    ok = add_pieces_stage(_Ctx(_builtin_then(lambda t, o: o)), P2K, [big, small], deals, tmp_path / "s")
    assert [(s.info.size, s.offset, s.payload_size) for s in ok] == [(512, 0, 346), (128, 512, 16)]
    assert [s.info.commitment for s in ok] == [commp_file(big)[0].commitment, commp_file(small)[0].commitment]
    assert add_pieces_stage(_Ctx(_builtin_then(lambda t, o: o)), P2K, [], [], tmp_path / "cc") == []

    def size(t, o):
        o[1]["size"] = 254
        return o

    def pledge(t, o):
        o[2]["commitment"] = list(bytes(32))
        return o

    def short(t, o):
        os.truncate(t["staged_filepath"], 1024)
        return o
    for change, msg in ((size, "add_pieces output[1].size: 254, the task asked for 127"),
                        (pledge, "add_pieces output[2].commitment: not the zero commitment of a 128-byte pledge piece"),
                        (lambda t, o: o[:-1], "expected an array of 5 PieceInfo"),
                        (lambda t, o: [{**o[0], "commitment": "AAAA"}, *o[1:]], "add_pieces output[0].commitment"),
                        (short, "has 1024 bytes, expected 2048")):
        with pytest.raises(Perm, match=msg.replace("[", r"\[").replace("]", r"\]")):
            add_pieces_stage(_Ctx(_builtin_then(change)), P2K, [big, small], deals, tmp_path / "s")
    cc_wrong = _Ctx(lambda t: [{"commitment": ZERO_1K, "size": 2032}])
    with pytest.raises(Perm, match=r"output\[0\].commitment: not the zero commitment of a 2048-byte"):
        add_pieces_stage(cc_wrong, P2K, [], [], tmp_path / "cc")
    with pytest.raises(Perm, match="more than its deal's piece size 128 holds"):
        add_pieces_stage(_Ctx(_builtin_then(lambda t, o: o)), P2K, [big], [{**deals[0], "piece_size": 128}], tmp_path / "s")
    swapped = [deals[0], {**deals[1], "piece_cid": commd_to_cid(bytes(ZERO_128))}]      # the processor wrote another piece
    with pytest.raises(Perm, match=r"output\[1\].commitment: not the commitment of deal 2's piece"):
        add_pieces_stage(_Ctx(_builtin_then(lambda t, o: o)), P2K, [big, small], swapped, tmp_path / "s")


def test_worker_refuses_tree_d_transfer_and_unseal_answers_that_lie(piece_files, tmp_path):
    from appliance.proofs.commitment import PieceInfo
    from appliance.worker.failure import Perm
    from appliance.worker.stage_data import tree_d_stage, transfer_stage, unseal_stage
    big, small = piece_files
    staged = add_pieces(P2K.size, [big, small], tmp_path / "staged")
    pieces = [s.info for s in staged]
    (tmp_path / "cache").mkdir()
    assert tree_d_stage(_Ctx(_builtin_then(lambda t, o: o)), P2K, tmp_path / "staged", tmp_path / "cache", pieces) == \
        build_tree_d(P2K.size, tmp_path / "staged", tmp_path / "cache")
    with pytest.raises(Perm, match="tree_d output: expected true, got False"):
        tree_d_stage(_Ctx(lambda t: False), P2K, tmp_path / "staged", tmp_path / "cache", pieces)
    with pytest.raises(Perm, match="the pieces give comm_d"):       # a tree of other pieces
        tree_d_stage(_Ctx(_builtin_then(lambda t, o: o)), P2K, tmp_path / "staged", tmp_path / "cache", pieces[:1])
    (tmp_path / "cache" / "sc-02-data-tree-d.dat").unlink()
    with pytest.raises(Perm, match="sc-02-data-tree-d.dat is missing"):
        tree_d_stage(_Ctx(lambda t: True), P2K, tmp_path / "staged", tmp_path / "cache", [PieceInfo(2048, bytes(ZERO_2K))])

    store = tmp_path / "store"
    files = [(big, store / "sealed" / "s-t01000-1"), (small, store / "cache" / "s-t01000-1" / "p_aux")]
    ctx = _Ctx(_builtin_then(lambda t, o: o), attached=[type("A", (), {"name": "persist-1", "location": store})()])
    transfer_stage(ctx, files, store)
    assert (store / "sealed" / "s-t01000-1").read_bytes() == big.read_bytes()
    assert ctx.sent[0]["stores"] == {"persist-1": {"name": "persist-1", "meta": None}}
    assert ctx.sent[0]["routes"][1] == {"src": {"store_name": None, "uri": str(small)},
                                        "dest": {"store_name": "persist-1", "uri": str(store / "cache" / "s-t01000-1" / "p_aux")},
                                        "opt": None}
    with pytest.raises(Perm, match="transfer output: expected true, got 1"):
        transfer_stage(_Ctx(lambda t: 1), files, store)
    (store / "cache" / "s-t01000-1" / "p_aux").unlink()
    with pytest.raises(Perm, match="answered true but .*p_aux is missing"):
        transfer_stage(_Ctx(lambda t: True), files, store)

    r = seal_sector(P2K, SectorID(1000, 1), bytes([7]) * 32, bytes([1]) * 32, tmp_path / "seal", [big, small])
    store = r.sector_dir.parent / "st"
    (store / "sealed").mkdir(parents=True)
    os.link(r.sector_dir / "sealed", store / "sealed" / "s-t01000-1")
    args = (P2K, SectorID(1000, 1), bytes([7]) * 32, r.comm_d, store, "s-t01000-1", 508, 16, tmp_path)
    assert unseal_stage(_Ctx(_builtin_then(lambda t, o: o)), *args) == small.read_bytes()
    with pytest.raises(ValueError, match="unseal output: 15 bytes, the task asked for 16"):
        unseal_stage(_Ctx(_builtin_then(lambda t, o: 15)), *args)

    def truncated(t, o):
        os.truncate(t["unsealed_output"], 10)
        return o
    with pytest.raises(ValueError, match="holds 10 bytes, expected 16"):
        unseal_stage(_Ctx(_builtin_then(truncated)), *args)
    assert not list(tmp_path.glob("*.unsealed"))           # the scratch output never stays


@pytest.mark.timeout(600)
def test_snapup_and_rebuild_add_pieces_and_persist_through_external_processors(tmp_path):
    """The snapup plan's add pieces and its update/ persisted by the transfer processor; a rebuild
    of both replicas through add_pieces, tree_d and transfer (as in test_snapup, with taps)."""
    from .test_snapup import snap_cluster

    taps = tmp_path / "taps"
    taps.mkdir()
    with snap_cluster(tmp_path, processors={s: [_tap(s)] for s in ("add_pieces", "tree_d", "transfer")},
                      worker_env={"TAP_LOG_DIR": str(taps)}) as c:
        home = c.home
        piece = tmp_path / "deal.bin"
        piece.write_bytes(b"snap deal payload " * 20)                 # 360 bytes: a 512-byte piece
        assert c.upgrade(piece)[1]["State"] == "landed"
        sent_before = len(_traffic(taps, "add_pieces"))
        c.rebuild_both_replicas()
    add = _traffic(taps, "add_pieces")
    assert all(t["err_msg"] is None for d, t in add if d == "<")
    # seal (CC), snap-up (the deal), rebuild: the sector key (CC) and the update's deal again
    assert [[(p["piece_file"] == "pledge", p["piece_size"]) for p in t["task"]["pieces"]] for d, t in add if d == ">"] == \
        [[], [(False, 508), (True, 508), (True, 1016)], [], [(False, 508), (True, 508), (True, 1016)]]
    assert sent_before == 4          # two tasks, two answers before the rebuild
    dests = [Path(r["dest"]["uri"]) for d, t in _traffic(taps, "transfer") if d == ">" for r in t["task"]["routes"]]
    assert dests.count(home / "persist-1" / "update" / "s-t01000-1") == 2        # the snap-up's, the rebuild's
    assert dests.count(home / "persist-1" / "sealed" / "s-t01000-1") == 2        # the seal's, the rebuild's
    assert all(t["output"] is True for d, t in _traffic(taps, "transfer") if d == "<")
    assert [t["output"] for d, t in _traffic(taps, "tree_d") if d == "<"] == [True, True]    # seal, rebuild
