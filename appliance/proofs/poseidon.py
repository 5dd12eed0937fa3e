"""neptune's Poseidon over BLS12-381 Fr, as Filecoin's tree_c, tree_r_last and comm_r use it
(Strength::Standard, HashType::MerkleTree; constants from the Grain LFSR of neptune's
round_constants.rs, Cauchy MDS of mds.rs)."""

from __future__ import annotations

from functools import lru_cache
from operator import mul

import numpy as np

from .field import MODULUS, inverse

try:
    # gmpy2's integers do 255-bit modular arithmetic about twice as fast as CPython's; the code
    # below is the same either way (the constants are simply of that type)
    from gmpy2 import mpz as _fast_int
    ARITHMETIC = "gmpy2"
except ImportError as exc:  # pragma: no cover - gmpy2 is a dependency; plain ints are the fallback
    _fast_int = int
    ARITHMETIC = f"python int (gmpy2 unavailable: {exc})"

P = MODULUS
_P_FAST = _fast_int(MODULUS)
FULL_ROUNDS = 8
PARTIAL_ROUNDS = {3: 55, 5: 56, 9: 57, 12: 57}   # by width t = arity + 1


def _grain_constants(t: int, r_f: int, r_p: int, field_bits: int = 255) -> list[int]:
    """neptune round_constants.rs: an 80-bit Grain LFSR (b[i+80] = b[i+62] ^ b[i+51] ^ b[i+38]
    ^ b[i+23] ^ b[i+13] ^ b[i]) seeded with the parameters, its first 160 outputs dropped,
    self-shrunk (a pair (1, x) yields x, (0, x) nothing), read as 255-bit big-endian candidates
    that are rejected when ≥ p."""
    state = 0   # bit k = b[i+k] for the window i..i+79
    k = 0
    for n, v in ((2, 1), (4, 1), (12, field_bits), (12, t), (10, r_f), (10, r_p), (30, (1 << 30) - 1)):
        for j in range(n - 1, -1, -1):
            state |= ((v >> j) & 1) << k
            k += 1
    wanted = (r_f + r_p) * t
    raw_bits = 160 + wanted * field_bits * 5   # ~4 raw bits per output bit, ~10% of candidates rejected
    words = []
    # the smallest tap is 18 behind the new bit, so 18 bits come out of each step
    for _ in range(-(-raw_bits // 18)):
        new = ((state >> 62) ^ (state >> 51) ^ (state >> 38) ^ (state >> 23) ^ (state >> 13) ^ state) & 0x3FFFF
        state = (state >> 18) | (new << 62)
        words.append(new)
    bits = ((np.array(words, dtype=np.uint32)[:, None] >> np.arange(18, dtype=np.uint32)) & 1).astype(np.uint8).ravel()
    bits = bits[160:]
    pairs = bits[: len(bits) // 2 * 2].reshape(-1, 2)
    kept = pairs[pairs[:, 0] == 1, 1]
    n_cand = len(kept) // field_bits
    cand = kept[: n_cand * field_bits].reshape(n_cand, field_bits)
    cand = np.concatenate([np.zeros((n_cand, 256 - field_bits), dtype=np.uint8), cand], axis=1)
    out = []
    for row in np.packbits(cand, axis=1):
        v = int.from_bytes(row.tobytes(), "big")
        if v < P:
            out.append(v)
            if len(out) == wanted:
                return out
    raise AssertionError("Grain LFSR: too few candidates drawn")   # cannot happen with the margin above


class PoseidonConstants:
    """Round constants and MDS matrix for one width; the partial rounds use the sparse-matrix
    form of the Poseidon paper (appendix B) so that each costs O(t) multiplications."""

    def __init__(self, arity: int):
        self.arity = arity
        t = self.t = arity + 1
        self.r_f = FULL_ROUNDS
        self.r_p = PARTIAL_ROUNDS[t]
        self.domain_tag = (1 << arity) - 1
        rc = _grain_constants(t, self.r_f, self.r_p)
        self.round_constants = [rc[i * t:(i + 1) * t] for i in range(self.r_f + self.r_p)]
        self.mds = [[inverse(i + t + j) for j in range(t)] for i in range(t)]
        self.mds_cols = [tuple(self.mds[i][j] for i in range(t)) for j in range(t)]
        self._optimize()

    def _optimize(self) -> None:
        """Rewrite the rounds as: S-box, add k_r, multiply (Poseidon paper, appendix B).
        Constants of lanes 1.. in partial rounds are folded back into the last full round of
        the first half; the partial rounds' dense MDS becomes one pre-sparse matrix plus one
        sparse matrix (first row, first column, identity) per partial round."""
        t, half, r_p = self.t, self.r_f // 2, self.r_p
        m = [row[:] for row in self.mds]          # column operator: x' = m x (m is symmetric)
        m_inv = _mat_inv(m)
        rc = self.round_constants
        n_rounds = self.r_f + r_p
        # standard form: +c_0, then per round S, M, +c_{r+1}  ==  S, +M^-1 c_{r+1}, M
        k = [_mat_vec(m_inv, rc[r + 1]) if r + 1 < n_rounds else [0] * t for r in range(n_rounds)]
        for r in range(half + r_p - 1, half - 1, -1):            # partial rounds, last first
            folded = _mat_vec(m_inv, [0] + k[r][1:])
            k[r] = [k[r][0]] + [0] * (t - 1)
            k[r - 1] = [(a + b) % P for a, b in zip(k[r - 1], folded)]
        self.initial = rc[0]
        self.full_k = [k[r] for r in range(half)] + [k[r] for r in range(half + r_p, n_rounds)]
        self.partial_k = [k[r][0] for r in range(half, half + r_p)]
        # sparse factorisation, from the last partial round back to the full round before them
        sparse = []
        n = m
        for _ in range(r_p):
            n11 = [row[1:] for row in n[1:]]
            v = _vec_mat([x for x in n[0][1:]], _mat_inv(n11))     # v^T = N01 N11^-1
            w = [row[0] for row in n[1:]]
            sparse.append((n[0][0], tuple(v), tuple(w)))
            m_hat = [[1] + [0] * (t - 1)] + [[0] + r for r in n11]
            n = _mat_mul(m_hat, m)
        sparse.reverse()
        self.sparse = sparse
        self.pre_sparse_cols = [tuple(n[j][i] for i in range(t)) for j in range(t)]   # rows of n
        f = _fast_int
        self.fast = (f(self.domain_tag), [f(x) for x in self.initial], [[f(x) for x in k] for k in self.full_k],
                     [f(x) for x in self.partial_k],
                     [(f(m00), tuple(map(f, v)), tuple(map(f, w))) for m00, v, w in self.sparse],
                     [tuple(map(f, col)) for col in self.mds_cols], [tuple(map(f, col)) for col in self.pre_sparse_cols])


@lru_cache(maxsize=None)
def constants(arity: int) -> PoseidonConstants:
    return PoseidonConstants(arity)


def hash_reference(inputs: list[int], arity: int | None = None) -> int:
    """Textbook Poseidon: for every round add constants, S-box (all lanes in full rounds, lane 0
    in partial ones), multiply by the MDS matrix. Slow and obviously right; the fast path is
    checked against it."""
    c = constants(arity or len(inputs))
    if len(inputs) != c.arity:
        raise ValueError(f"poseidon: {len(inputs)} inputs for arity {c.arity}")
    state = [c.domain_tag, *inputs]
    half = c.r_f // 2
    for r in range(c.r_f + c.r_p):
        state = [(s + k) % P for s, k in zip(state, c.round_constants[r])]
        if r < half or r >= half + c.r_p:
            state = [pow(s, 5, P) for s in state]
        else:
            state[0] = pow(state[0], 5, P)
        state = [sum(map(mul, state, col)) % P for col in c.mds_cols]
    return state[1]


def _mat_mul(a: list[list[int]], b: list[list[int]]) -> list[list[int]]:
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) % P for j in range(len(b[0]))] for i in range(len(a))]


def _mat_vec(a: list[list[int]], v: list[int]) -> list[int]:
    return [sum(x * y for x, y in zip(row, v)) % P for row in a]


def _vec_mat(v: list[int], a: list[list[int]]) -> list[int]:
    return [sum(v[i] * a[i][j] for i in range(len(v))) % P for j in range(len(a[0]))]


def _mat_inv(a: list[list[int]]) -> list[list[int]]:
    """Gauss-Jordan inverse mod P."""
    n = len(a)
    aug = [row[:] + [int(i == j) for j in range(n)] for i, row in enumerate(a)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if aug[r][col] % P)
        aug[col], aug[pivot] = aug[pivot], aug[col]
        inv = inverse(aug[col][col])
        aug[col] = [x * inv % P for x in aug[col]]
        for r in range(n):
            if r != col and aug[r][col]:
                f = aug[r][col]
                aug[r] = [(x - f * y) % P for x, y in zip(aug[r], aug[col])]
    return [row[n:] for row in aug]


def hash_ints(inputs, c: PoseidonConstants) -> int:
    """The fast path: same function as hash_reference."""
    p = _P_FAST
    tag, initial, full_k, partial_k, sparse, cols, pre_sparse_cols = c.fast
    state = [(s + k) % p for s, k in zip((tag, *inputs), initial)]
    half = c.r_f // 2
    for r in range(half):
        sq = [x * x % p for x in state]
        state = [x * s * s % p + k for x, s, k in zip(state, sq, full_k[r])]
        state = [sum(map(mul, state, col)) % p for col in (cols if r < half - 1 else pre_sparse_cols)]
    for a, (m00, v, w) in zip(partial_k, sparse):
        x0 = state[0]
        x2 = x0 * x0 % p
        x0 = (x2 * x2 % p * x0 + a) % p
        rest = state[1:]
        state = [(m00 * x0 + sum(map(mul, v, rest))) % p]
        state += [(wj * x0 + xj) % p for wj, xj in zip(w, rest)]
    for r in range(half, c.r_f):
        sq = [x * x % p for x in state]
        state = [x * s * s % p + k for x, s, k in zip(state, sq, full_k[r])]
        state = [sum(map(mul, state, col)) % p for col in cols]
    return int(state[1])


def hash_fr(inputs: list[int]) -> int:
    """Poseidon of field elements (ints < r); the arity is the number of inputs."""
    return hash_ints(inputs, constants(len(inputs)))


def hash_nodes(nodes: list[bytes]) -> bytes:
    """Poseidon of 32-byte little-endian nodes, as Filecoin's trees hash their children."""
    c = constants(len(nodes))
    return hash_ints([int.from_bytes(b, "little") for b in nodes], c).to_bytes(32, "little")
