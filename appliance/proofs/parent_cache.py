"""The SDR parent cache checked before use. A cache with one parent index changed (in range)
seals sectors with a wrong CommR that still land; only its digest tells. The expected digests
are rust-fil-proofs' (storage-proofs-porep parent_cache.json); a cache whose id is not listed
there (synthetic and non-interactive PoRep) is checked against the graph generated afresh.

A file is checked once per process, and again when its size, mtime or inode change: hashing a
32GiB sector's cache (56 GiB) costs about half a minute at SHA-256 speed. A bad cache is kept
under `<name>.corrupt-<time>`, a new one is generated next to it, and both are logged."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from ..core.proof_types import SealProofType
from . import ProofError
from .graph import DEGREE, cache_file, cache_id, iter_parent_chunks, write_parent_cache

log = logging.getLogger("damocles.proofs.parent_cache")

# rust-fil-proofs storage-proofs-porep/parent_cache.json (cache id -> sha256 of the file)
EXPECTED_DIGESTS = {
    "v28-sdr-parent-3f0eef38bb48af1f48ad65e14eb85b4ebfc167cec18cd81764f6d998836c9899":
        "3da49221e2ed55371b86d0bf3d6526fcf128af61bed904f966428db1b531750d",     # 2KiB V1
    "v28-sdr-parent-494d91dc80f2df5272c4b9e129bc7ade9405225993af9fe34e6542a39a47554b":
        "840057702eea7652cf97e04306c30fe57174714d90de156a25eddd6075c25b97",     # 2KiB V1_1
    "v28-sdr-parent-dcdabb0fbe4364bf0ac28b6a18c66de246409fa1a9020a00f33fb3e3053da6dc":
        "a76604f2f59f2744c7151653bbb1d8596b6b57d295e6fa6c1f0c41d725b502ce",     # 8MiB V1
    "v28-sdr-parent-5eed212119fd91aa6220a27f31a8966444a9381842bceb3a1ea61525bd47a5b5":
        "03cd13565ded97c240a5f52e54295ad127bd0461b57904cb3a4d79b097bbecab",     # 8MiB V1_1
    "v28-sdr-parent-2aa9c77c3e58259481351cc4be2079cc71e1c9af39700866545c043bfa30fb42":
        "3adcc092423aa76d6a7184016893406da44dd974b219a89cd3ece25e4e3018f5",     # 512MiB
    "v28-sdr-parent-7ba215a1d2345774ab90b8cb1158d296e409d6068819d7b8c7baf0b25d63dc34":
        "b5877d1963793efebc261fd8fde4dd6bc59e6b5c7abf52617a4ee023b8dc173a",     # 512MiB
    "v28-sdr-parent-e1fa5d5b811ddbd118be3412c4a8c329156b8b8acc72632bca459455b5a05a13":
        "3c4f9841fcc75aed8c695800e58d08480629f25af3a2aefd81904181d75cc0b6",     # 32GiB
    "v28-sdr-parent-21981246c370f9d76c7a77ab273d94bde0ceb4e938292334960bce05585dc117":
        "93deeac5e3052b6927467d4b2641bb782f05491de18d510147c93eeedd8672da",     # 32GiB
    "v28-sdr-parent-8a99e8d6b6be7ab87a56b632e6739ff201c23ea14e99737c74690f0e265574d6":
        "2778a732ad46a7dc18e0564dfdf59fd321dcde74ab476fd6d3c4e6735d7cd89c",     # 64GiB
    "v28-sdr-parent-4905486b7af19558ac3649bc6261411858b6add534438878c4ee3b29d8b9de0b":
        "2698b74eb2606b55b98d8b095e18b6320b47f46e00075956d48640ccd1641b03",     # 64GiB
}
_READ = DEGREE * 4 * (1 << 16)      # bytes hashed at a time: whole nodes, so indices can be range-checked
_verified: dict[str, tuple[int, int, int]] = {}     # path -> (size, mtime_ns, inode) checked in this process


def expected_digest(proof: SealProofType) -> str:
    """rust-fil-proofs' digest, else that of the graph generated now (cached for the process)."""
    cid = cache_id(proof)
    if cid not in EXPECTED_DIGESTS:
        h = hashlib.sha256()
        for _, chunk in iter_parent_chunks(proof):
            h.update(chunk.astype("<u4").tobytes())
        EXPECTED_DIGESTS[cid] = h.hexdigest()
    return EXPECTED_DIGESTS[cid]


def load_parents(proof: SealProofType, cache_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The whole parent table (uint32, (nodes, 14)) from a checked cache file, generating it when
    it is missing and rebuilding it aside when it is bad."""
    path = cache_file(proof, cache_dir)
    if not path.exists():
        _generate(proof, cache_dir, "missing")
    verify(proof, path, cache_dir)
    return np.fromfile(path, dtype="<u4").reshape(-1, DEGREE)


def verify(proof: SealProofType, path: Path, cache_dir=None) -> None:
    """Check `path` (once per process while it is unchanged); a bad one is rebuilt aside."""
    st = path.stat()
    key = (st.st_size, st.st_mtime_ns, st.st_ino)
    if _verified.get(str(path)) == key:
        return
    problem = check_file(proof, path)
    if problem:
        try:
            with _lock(path):
                st2 = path.stat()
                if (st2.st_size, st2.st_mtime_ns, st2.st_ino) != key:      # another process already replaced it
                    return verify(proof, path, cache_dir)
                kept = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
                os.replace(path, kept)
                log.error("parent cache %s is corrupt (%s): kept as %s, generating a new one", path, problem, kept.name,
                          extra={"event": "parent_cache_corrupt", "path": str(path), "kept": str(kept)})
                _generate(proof, cache_dir, f"rebuilt after {problem}")
        except OSError as exc:      # a read-only or full cache directory: refuse the bad cache, naming both problems
            raise ProofError(f"parent cache {path} is corrupt ({problem}) and cannot be rebuilt aside: "
                             f"{exc.strerror or exc} ({exc.filename or path.parent})") from None
        st = path.stat()
    _verified[str(path)] = (st.st_size, st.st_mtime_ns, st.st_ino)


def check_file(proof: SealProofType, path: Path) -> str | None:
    """What is wrong with a parent cache file (None: it is the right one): its length, a parent
    index outside the graph, or a digest that is not the expected one."""
    nodes = proof.size.nodes
    expected_len = nodes * DEGREE * 4
    size = path.stat().st_size
    if size != expected_len:
        return f"{size} bytes, expected {expected_len}"
    h = hashlib.sha256()
    buf = bytearray(_READ)
    out_of_range = None
    done = 0
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(memoryview(buf)[:n])
            if out_of_range is None and n % 4 == 0:
                idx = np.frombuffer(buf, dtype="<u4", count=n // 4)
                bad = np.flatnonzero(idx >= nodes)
                if bad.size:
                    at = done // 4 + int(bad[0])
                    out_of_range = f"node {at // DEGREE} has parent {int(idx[bad[0]])}, outside the graph's {nodes} nodes"
            done += n
    digest = h.hexdigest()
    want = expected_digest(proof)
    if digest != want:
        return f"sha256 {digest}, expected {want}" + (f"; {out_of_range}" if out_of_range else "")
    return None


def _generate(proof: SealProofType, cache_dir, why: str) -> None:
    path, digest = write_parent_cache(proof, cache_dir)
    want = expected_digest(proof)
    if digest != want:
        raise ProofError(f"parent cache {path} generated with sha256 {digest}, expected {want}: refusing to use it")
    st = path.stat()
    _verified[str(path)] = (st.st_size, st.st_mtime_ns, st.st_ino)      # just hashed while written
    log.warning("parent cache %s generated (%s)", path, why, extra={"event": "parent_cache_generated", "path": str(path)})


class _lock:
    """An exclusive flock on `<cache>.lock`, so that processes sharing a cache rebuild it once."""

    def __init__(self, path: Path):
        self.path = path.with_name(path.name + ".lock")

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
