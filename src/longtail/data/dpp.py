"""k-DPP undersampling of one class, and of all classes (IP-DPP, docs/methods/ipdpp.md §3, §6).

IP-DPP fine-tunes on a per-class subset of at most k images drawn by a k-DPP. For one class with N images and
correct-class probabilities p (P = Σ p_i), the kernel (paper Eq. 16, with M = N) is

    S = diag(d) + u uᵀ,   u = p / √M,   d_i = 1 − p_i P / M,

so S_ij = p_i p_j / M (i ≠ j) and S_ii = 1 − p_i (P − p_i) / M; every row sums to 1 and the eigenvalues lie in
[0, 1]. ``scale="n_squared"`` (M = N², reference quirk Q3) makes S ≈ I. By the matrix determinant lemma

    det S_Y = Π_{i∈Y} d_i · (1 + Σ_{i∈Y} w_i),   w_i = u_i² / d_i,

so the k-DPP P(Y) ∝ det S_Y (|Y| = k, paper Eq. 23) is a product measure with weights d_i (low-confidence images
favoured) tilted by one weak diversity term. :class:`KDPP` samples it exactly through that structure, never forming
the N×N matrix: O(N·k) time and memory to build tables of bounded ratios of elementary symmetric polynomials once,
then an O(N) walk per draw. :func:`sample_kdpp_paper_alg1` is the paper's Algorithm 1 as printed (dense, spectral), and
:func:`reference_uniform_subsets` reproduces bit for bit what the released code draws: DPPy 0.3.3's MCMC chain whose
*initial* state, a seeded uniform k-subset, is kept (Q1, Q2). :func:`select_subset` applies one sampler per class.

Sources: Lin & Yuan, "Long-Tailed Recognition via Information-Preservable Two-Stage Learning", NeurIPS 2025
(arXiv 2510.08836), Eq. 16, 23 and Algorithm 1; Kulesza & Taskar, "Determinantal Point Processes for Machine
Learning" (2012), k-DPPs and Algorithm 1; DPPy 0.3.3 ``finite_dpps.py`` / ``mcmc_sampling.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from longtail.data.imbalance import lt_counts

KERNEL_SCALES = ("n", "n_squared")
SAMPLERS = ("exact_kdpp", "paper_alg1", "reference_uniform")
CIFAR10_LT_IF100 = tuple(lt_counts(5000, 10, 100))
REFERENCE_SEED = 42
REFERENCE_CHAIN_STEPS = 10


def _as_float64(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def ipdpp_kernel_parts(p, scale: str = "n") -> tuple[np.ndarray, np.ndarray]:
    """``(d, u)`` with S = diag(d) + u uᵀ, the IP-DPP kernel (Eq. 16) of one class's correct-class probabilities.

    ``scale="n"`` divides by N as the paper does; ``"n_squared"`` by N² as the released code does (Q3). d is
    clipped at 0 against rounding (d_i = 0 only when every p_i = 1).
    """
    p = _as_float64(p)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"p must be a non-empty 1-D array of probabilities, got shape {p.shape}")
    if not np.all(np.isfinite(p)) or p.min() < 0 or p.max() > 1:
        raise ValueError(f"p must lie in [0, 1], got values in [{p.min()}, {p.max()}]")
    if scale not in KERNEL_SCALES:
        raise ValueError(f"kernel scale must be one of {KERNEL_SCALES}, got '{scale}'")
    m = float(p.size) if scale == "n" else float(p.size) ** 2
    d = np.maximum(1.0 - p * (p.sum() / m), 0.0)
    return d, p / np.sqrt(m)


def ipdpp_kernel(p, scale: str = "n") -> np.ndarray:
    """The dense N×N IP-DPP kernel S (tests, :func:`sample_kdpp_paper_alg1` and small N only)."""
    return _dense_kernel(ipdpp_kernel_parts(p, scale))


def _log_or_minus_inf(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


class KDPP:
    """Exact k-DPP with L = diag(d) + u uᵀ (d ≥ 0), built once and sampled many times.

    With w_i = u_i²/d_i, det L_Y = Π_Y d_i · (1 + Σ_Y w_i). Let E_r(j) = e_r(d_0..d_{j−1}) (elementary symmetric
    polynomials of a prefix) and F_r(j) = Σ_{|Y|=r, Y⊆{0..j−1}} Π_Y d_i · Σ_Y w_i, so that
    E_r(j+1) = E_r(j) + d_j E_{r−1}(j) and F_r(j+1) = F_r(j) + d_j (F_{r−1}(j) + w_j E_{r−1}(j)). Items are visited
    from N−1 down to 0; with r still to pick and A = Σ w of those picked, item j is taken with probability
    d_j ((1 + A + w_j) E_{r−1}(j) + F_{r−1}(j)) / ((1 + A) E_r(j+1) + F_r(j+1)).

    E_500 of 5000 terms is ~1e700, so the tables hold bounded ratios instead, which need no logarithms:
    ρ_r(j) = d_j E_{r−1}(j) / E_r(j+1) ∈ [0, 1] and G_r(j) = F_r(j) / E_r(j) (a conditional mean of Σ_Y w). With
    s_r(j) = E_r(j) / E_{r−1}(j): ρ_r(j) = d_j / (s_r(j) + d_j), s_r(j+1) = (s_r(j) + d_j)(1 − ρ_{r−1}(j)),
    G_r(j+1) = (1 − ρ_r(j)) G_r(j) + ρ_r(j) (G_{r−1}(j) + w_j), and the inclusion probability is
    ρ_r(j) (1 + A + w_j + G_{r−1}(j)) / (1 + A + G_r(j+1)). Building is one pass of length-(k+1) vector operations
    per item, O(N·k) time and memory; a draw is an O(N) scalar walk. L is first rescaled (the k-DPP is invariant
    to L → cL) so that max(d, u²) = 1, and d is floored at 1e-100, the limit d_i → 0 (an all-zero d, L = u uᵀ,
    gives P(Y) ∝ Σ_Y u_i²); u = 0 gives the product measure P(Y) ∝ Π_Y d_i.
    """

    DIAG_FLOOR = 1e-100

    def __init__(self, d, u, k: int):
        d, u = _as_float64(d), _as_float64(u)
        if d.ndim != 1 or d.shape != u.shape:
            raise ValueError(f"d and u must be 1-D of the same length, got shapes {d.shape} and {u.shape}")
        if not (np.all(np.isfinite(d)) and np.all(np.isfinite(u))) or (d.size and d.min() < 0):
            raise ValueError("d must be finite and non-negative, u finite")
        if not 0 <= k <= d.size:
            raise ValueError(f"k must lie in 0..N = {d.size}, got {k}")
        self.n, self.k = d.size, int(k)
        scale = max(d.max(initial=0.0), (u**2).max(initial=0.0)) or 1.0
        self.d = np.maximum(d / scale, self.DIAG_FLOOR)
        self.w = (u**2 / scale) / self.d
        self._rho, self._g = self._ratio_tables()
        self._w_list = self.w.tolist()

    def _ratio_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """ρ (row j: item j, N rows) and G (row j: prefix of j items, N+1 rows), columns r = 0..k."""
        rho = np.zeros((self.n, self.k + 1))
        g = np.zeros((self.n + 1, self.k + 1))
        s = np.zeros(self.k + 1)
        s[0] = np.inf
        for j in range(self.n):
            d_j, s_plus_d = self.d[j], s + self.d[j]
            np.divide(d_j, s_plus_d, out=rho[j])
            not_in = 1.0 - rho[j]
            np.multiply(s_plus_d[1:], not_in[:-1], out=s[1:])
            g[j + 1, 1:] = not_in[1:] * g[j, 1:] + rho[j, 1:] * (g[j, :-1] + self.w[j])
        return rho, g

    def _inclusion_probability(self, j: int, r: int, one_plus_a: float) -> float:
        """P(item j is taken | r items still to pick from 0..j, Σ w of the picked ones = one_plus_a − 1)."""
        if r == j + 1:
            return 1.0
        w_j = self._w_list[j]
        return float(self._rho[j, r] * (one_plus_a + w_j + self._g[j, r - 1]) / (one_plus_a + self._g[j + 1, r]))

    def sample(self, rng) -> np.ndarray:
        """One draw: k distinct item indices, sorted ascending. Uses ``rng.random(N)`` once."""
        uniforms = np.random.default_rng(rng).random(self.n).tolist()
        taken, r, one_plus_a = [], self.k, 1.0
        for j in range(self.n - 1, -1, -1):
            if r == 0:
                break
            if uniforms[j] < self._inclusion_probability(j, r, one_plus_a):
                taken.append(j)
                r -= 1
                one_plus_a += self._w_list[j]
        return np.array(taken[::-1], dtype=np.int64)

    def sample_many(self, rng, num_draws: int) -> np.ndarray:
        """``(num_draws, k)`` array of independent draws, each row sorted ascending."""
        rng = np.random.default_rng(rng)
        return np.array([self.sample(rng) for _ in range(num_draws)], dtype=np.int64).reshape(num_draws, self.k)

    def log_probability(self, subset) -> float:
        """log P(a draw equals ``subset``): the sampler's own conditionals multiplied along that subset's path."""
        members = {int(i) for i in subset}
        if len(members) != self.k or not members <= set(range(self.n)):
            return -np.inf
        log_prob, r, one_plus_a = 0.0, self.k, 1.0
        for j in range(self.n - 1, -1, -1):
            if r == 0:
                break
            p_in = self._inclusion_probability(j, r, one_plus_a)
            if j in members:
                log_prob += _log_or_minus_inf(p_in)
                r, one_plus_a = r - 1, one_plus_a + self._w_list[j]
            else:
                log_prob += _log_or_minus_inf(1.0 - p_in)
        return log_prob


def _dense_kernel(kernel) -> np.ndarray:
    if isinstance(kernel, tuple):
        d, u = (_as_float64(x) for x in kernel)
        return np.diag(d) + np.outer(u, u)
    kernel = _as_float64(kernel)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise ValueError(f"kernel must be a square matrix or a (d, u) pair, got shape {kernel.shape}")
    return kernel


def _paper_phase1(eig_vals: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Eigenpairs in descending λ, each accepted when u < λ/(λ+1); unaccepted ones are revisited until k are in."""
    order = np.argsort(-eig_vals, kind="stable")
    accepted: list[int] = []
    while len(accepted) < k:
        for n in order[~np.isin(order, accepted)]:
            if rng.random() < eig_vals[n] / (eig_vals[n] + 1.0):
                accepted.append(int(n))
                if len(accepted) == k:
                    break
    return np.array(accepted, dtype=np.int64)


def _paper_phase2(basis: np.ndarray, k: int) -> np.ndarray:
    """k times: i* = argmax_i Σ_v (vᵀe_i)², then restrict span(V) to e_{i*}^⊥ (deterministic).

    The squared row norms of an orthonormal basis are the diagonal of the projection K = VVᵀ, and restricting the
    span to e_{i*}^⊥ maps K to K − K e_{i*} e_{i*}ᵀ K / K_{i*i*}; that Gram-Schmidt update costs O(N·k) per step
    instead of re-orthonormalising V. The constant 1/|V| does not change the argmax.
    """
    row_norms = np.einsum("ij,ij->i", basis, basis)
    directions = np.zeros((basis.shape[0], k))
    chosen = np.zeros(k, dtype=np.int64)
    for step in range(k):
        i = int(np.argmax(row_norms))
        chosen[step] = i
        column = basis @ basis[i] - directions[:, :step] @ directions[i, :step]
        directions[:, step] = column / np.sqrt(row_norms[i])
        row_norms = row_norms - directions[:, step] ** 2
        row_norms[chosen[: step + 1]] = -np.inf
    return np.sort(chosen)


def sample_kdpp_paper_alg1(kernel, k: int, rng) -> np.ndarray:
    """The paper's Algorithm 1 as printed (docs/methods/ipdpp.md §3 ``paper_alg1``): k sorted item indices.

    ``kernel`` is a dense symmetric PSD matrix or a ``(d, u)`` pair (densified; ``np.linalg.eigh`` is O(N³)).
    Phase 1 is random (one uniform per visited eigenpair); phase 2 picks argmax items and is deterministic.
    """
    dense = _dense_kernel(kernel)
    eig_vals, eig_vecs = np.linalg.eigh(dense)
    eig_vals = np.clip(eig_vals, 0.0, None)
    positive = int(np.sum(eig_vals > 1e-12 * max(eig_vals.max(initial=0.0), 1.0)))
    if not 0 <= k <= positive:
        raise ValueError(f"k must lie in 0..{positive} (the number of positive eigenvalues), got {k}")
    accepted = _paper_phase1(eig_vals, k, np.random.default_rng(rng))
    return _paper_phase2(eig_vecs[:, accepted], k)


def _per_class_k(k, num_classes: int) -> list[int]:
    ks = [int(k)] * num_classes if np.isscalar(k) else [int(x) for x in k]
    if len(ks) != num_classes or min(ks, default=0) < 0:
        raise ValueError(f"k must be a non-negative int or one per class ({num_classes}), got {k}")
    return ks


def reference_uniform_subsets(class_sizes: Sequence[int], k, seed: int = REFERENCE_SEED) -> dict[int, np.ndarray]:
    """Per class, the positions (within the class, in stored order) the released code keeps (Q1–Q3), bit for bit.

    One ``RandomState(seed)`` per call; classes from C−1 down to 0; a class with n_c ≤ k is kept whole and consumes
    nothing. Otherwise DPPy 0.3.3 ``sample_mcmc_k_dpp(size=k)`` draws the chain's initial state
    ``choice(n_c, k, replace=False)`` (accepted: det S_Y ≥ (1 − 1/n_c)^k > 1e-9 for the N²-scaled kernel), which is
    what is kept, then runs 9 basis-exchange steps whose generator use never depends on p: one uniform, and if it
    is < 0.5, ``choice(k)``, ``choice(n_c − k)`` and the acceptance uniform. Positions come in draw order. k is
    looked up by class id (Q9).
    """
    ks = _per_class_k(k, len(class_sizes))
    rng = np.random.RandomState(seed)
    subsets = {}
    for c in range(len(class_sizes) - 1, -1, -1):
        n_c, k_c = int(class_sizes[c]), ks[c]
        if n_c <= k_c:
            subsets[c] = np.arange(n_c, dtype=np.int64)
            continue
        subsets[c] = rng.choice(n_c, k_c, replace=False).astype(np.int64)
        _advance_like_basis_exchange(rng, n_c, k_c)
    return dict(sorted(subsets.items()))


def _advance_like_basis_exchange(rng: np.random.RandomState, n: int, k: int) -> None:
    """Consume ``rng`` as DPPy 0.3.3 ``basis_exchange_sampler`` does after its initial state."""
    for _ in range(REFERENCE_CHAIN_STEPS - 1):
        if rng.rand() < 0.5:
            rng.choice(k)
            rng.choice(n - k)
            rng.rand()


def _draw_class(p: np.ndarray, k: int, sampler: str, kernel_scale: str, rng: np.random.Generator) -> np.ndarray:
    if sampler == "exact_kdpp":
        return KDPP(*ipdpp_kernel_parts(p, kernel_scale), k).sample(rng)
    return sample_kdpp_paper_alg1(ipdpp_kernel_parts(p, kernel_scale), k, rng)


def select_subset(probs, labels, k, sampler: str = "exact_kdpp", kernel_scale: str = "n", seed: int = 0,
                  round: int = 0) -> np.ndarray:
    """Sorted global indices of the undersampled training set: per class, min(n_c, k_c) images.

    ``probs[i]`` is image i's correct-class probability, ``labels[i]`` its class; ``k`` an int or one per class.
    A class with n_c ≤ k_c is kept whole; otherwise ``sampler`` draws k_c of its images (in index order) with
    ``np.random.default_rng([seed, round, c])``. ``reference_uniform`` ignores probs (which may be None), seed and
    round (Q1, Q2).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got '{sampler}'")
    labels = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).astype(np.int64)
    probs = np.zeros(labels.shape) if probs is None and sampler == "reference_uniform" else _as_float64(probs)
    if labels.ndim != 1 or probs.shape != labels.shape:
        raise ValueError(f"probs and labels must be 1-D of the same length, got {probs.shape} and {labels.shape}")
    num_classes = (int(labels.max()) + 1 if labels.size else 0) if np.isscalar(k) else len(k)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels span {labels.min()}..{labels.max()} but k covers {num_classes} classes")
    ks = _per_class_k(k, num_classes)
    members = [np.flatnonzero(labels == c) for c in range(len(ks))]
    if sampler == "reference_uniform":
        local = reference_uniform_subsets([len(m) for m in members], ks)
    else:
        local = {c: np.arange(len(m)) if len(m) <= ks[c]
                 else _draw_class(probs[m], ks[c], sampler, kernel_scale, np.random.default_rng([seed, round, c]))
                 for c, m in enumerate(members)}
    kept = [members[c][local[c]] for c in range(len(ks))]
    return np.sort(np.concatenate(kept)).astype(np.int64) if kept else np.zeros(0, np.int64)


def subset_class_counts(indices, labels, num_classes: int) -> np.ndarray:
    """Images per class in a subset of global ``indices``."""
    return np.bincount(np.asarray(labels)[np.asarray(indices)], minlength=num_classes)


def time_selection(class_sizes: Sequence[int] = CIFAR10_LT_IF100, k: int = 500, sampler: str = "exact_kdpp",
                   seed: int = 0) -> float:
    """Seconds one :func:`select_subset` takes on classes of ``class_sizes`` with p ~ U[0, 1] (the benchmark)."""
    labels = np.repeat(np.arange(len(class_sizes)), class_sizes)
    probs = np.random.default_rng(seed).random(labels.size)
    start = time.perf_counter()
    select_subset(probs, labels, k, sampler=sampler, seed=seed)
    return time.perf_counter() - start
