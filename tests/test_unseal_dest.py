"""Unseal destinations on the worker: file:// only inside `[worker] unseal_output_dirs` (none
configured: refused), store:// only inside a writable attached store, no `..`, no symlink out, and
never replacing a file. The attack: `UnsealPiece(..., "file:///<the worker's worker.toml>")`."""


import pytest

from appliance.config.processors import AttachedStore
from appliance.worker.config import ConfigError, parse_worker_config
from appliance.worker.unseal_dest import DestinationError, resolve_destination, write_new_file


def write(dest, out_dirs, attached=(), payload=b"piece bytes"):
    path, root = resolve_destination(dest, out_dirs, list(attached))
    write_new_file(path, root, payload, make_dirs=dest.startswith("store://"))
    return path


def test_file_destinations_need_a_configured_output_dir(tmp_path):
    cfg = tmp_path / "worker.toml"
    cfg.write_text("[worker]\n")
    with pytest.raises(DestinationError, match="no \\[worker\\] unseal_output_dirs"):
        write(f"file://{tmp_path}/out", [])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DestinationError, match="outside the worker's unseal_output_dirs"):
        write(f"file://{cfg}", [out])                       # the worker's own config: refused
    assert cfg.read_text() == "[worker]\n"
    with pytest.raises(DestinationError, match="'..'"):
        write(f"file://{out}/../worker.toml", [out])
    assert cfg.read_text() == "[worker]\n"
    with pytest.raises(DestinationError, match="outside"):
        write(f"file://{tmp_path}/outside", [out])          # a prefix of the name is not inside
    assert write(f"file://{out}/piece", [out]).read_bytes() == b"piece bytes"


def test_an_existing_file_is_never_replaced(tmp_path):
    (tmp_path / "kept").write_bytes(b"the operator's")
    with pytest.raises(DestinationError, match="already exists"):
        write(f"file://{tmp_path}/kept", [tmp_path])
    assert (tmp_path / "kept").read_bytes() == b"the operator's"
    write(f"file://{tmp_path}/again", [tmp_path])
    write(f"file://{tmp_path}/again", [tmp_path])            # the same bytes (a rerun after a crash): fine
    with pytest.raises(DestinationError, match="already exists"):
        write(f"file://{tmp_path}/again", [tmp_path], payload=b"other bytes")
    assert (tmp_path / "again").read_bytes() == b"piece bytes"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_symlinks_out_are_refused(tmp_path):
    out, secret_dir = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    secret_dir.mkdir()
    (secret_dir / "worker.toml").write_text("kept")
    (out / "link-dir").symlink_to(secret_dir)
    (out / "link-file").symlink_to(secret_dir / "worker.toml")
    (out / "dangling").symlink_to(secret_dir / "new-file")
    with pytest.raises(DestinationError, match="outside"):
        write(f"file://{out}/link-dir/worker.toml", [out])
    with pytest.raises(DestinationError, match="outside"):
        write(f"file://{out}/link-dir/new", [out])
    for name in ("link-file", "dangling"):
        with pytest.raises(DestinationError, match="already exists"):
            write(f"file://{out}/{name}", [out])
    assert (secret_dir / "worker.toml").read_text() == "kept" and not (secret_dir / "new-file").exists()
    assert sorted(p.name for p in secret_dir.iterdir()) == ["worker.toml"]


def test_store_destinations_stay_in_a_writable_attached_store(tmp_path):
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir()
    elsewhere.mkdir()
    (store / "out").symlink_to(elsewhere)
    attached = [AttachedStore("s1", store), AttachedStore("ro", tmp_path, readonly=True)]
    assert write("store://s1/unsealed/a/b", [], attached).read_bytes() == b"piece bytes"
    for dest, msg in (("store://s1/../x", "'..'"), ("store://s1/out/x", "outside"), ("store://ro/x", "read-only"),
                      ("store://nope/x", "not attached"), ("store://s1/", "relative path"), ("ftp://x", "is not file")):
        with pytest.raises(DestinationError, match=msg):
            write(dest, [], attached)
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "x").exists()


def test_config_key(tmp_path):
    manager = {"sector_manager": {"rpc_client": {"addr": "http://127.0.0.1:1789"}}}
    cfg = parse_worker_config({"worker": {"unseal_output_dirs": [str(tmp_path)]}, **manager})
    assert cfg.unseal_output_dirs == [tmp_path] and not cfg.warnings
    assert parse_worker_config(manager).unseal_output_dirs == []
    for bad, msg in (("/x", "not a list"), (["rel/dir"], "not an absolute path"), ([""], "not a list")):
        with pytest.raises(ConfigError, match=f"unseal_output_dirs.*{msg}"):
            parse_worker_config({"worker": {"unseal_output_dirs": bad}, **manager})
