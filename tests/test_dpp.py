"""IP-DPP kernel and k-DPP samplers: docs/methods/ipdpp.md §7 (kernel, exact k-DPP, subset sizes, reference_uniform)."""

import itertools

import numpy as np
import pytest
import torch
from dppy.finite_dpps import FiniteDPP
from scipy.stats import chisquare

from longtail.data.dpp import (
    CIFAR10_LT_IF100,
    KDPP,
    ipdpp_kernel,
    ipdpp_kernel_parts,
    reference_uniform_subsets,
    sample_kdpp_paper_alg1,
    select_subset,
    subset_class_counts,
)
from longtail.data.imbalance import lt_counts

CIFAR100_LT_IF100 = lt_counts(500, 100, 100)
CHI2_P_MIN = 1e-3


def shuffled_labels(counts, seed=0):
    """Labels with the given counts, in random order (a class's images are not contiguous)."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))


def diag_plus_rank_one(n, seed, u_scale=1.5):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.2, 1.0, n), rng.normal(size=n) * u_scale


def enumerated_law(kernel, k):
    """All k-subsets of the kernel's items and P(Y) = det L_Y / Σ det L_Y' (dense determinants, no lemma)."""
    subsets = np.array(list(itertools.combinations(range(len(kernel)), k)))
    dets = np.linalg.det(kernel[subsets[:, :, None], subsets[:, None, :]])
    return subsets, dets / dets.sum()


def subset_frequencies(draws, subsets):
    index = {tuple(s): i for i, s in enumerate(subsets.tolist())}
    return np.bincount([index[tuple(sorted(d))] for d in np.asarray(draws).tolist()], minlength=len(subsets))


def chi2_p(draws, subsets, law):
    counts = subset_frequencies(draws, subsets)
    return chisquare(counts, law * counts.sum()).pvalue


# ---------------------------------------------------------------- kernel


@pytest.mark.parametrize("scale, m_of_n", [("n", lambda n: n), ("n_squared", lambda n: n * n)])
def test_kernel_rows_sum_to_one_and_follow_eq16(scale, m_of_n):
    p = np.random.default_rng(0).random(9)
    s, m = ipdpp_kernel(p, scale), m_of_n(len(p))
    np.testing.assert_allclose(s.sum(axis=1), 1.0, atol=1e-14)
    np.testing.assert_allclose(s, np.diag(1 - p * p.sum() / m) + np.outer(p, p) / m, atol=1e-15)
    off_diagonal = ~np.eye(len(p), dtype=bool)
    np.testing.assert_allclose(s[off_diagonal], np.outer(p, p)[off_diagonal] / m, atol=1e-15)
    np.testing.assert_allclose(np.diag(s), 1 - p * (p.sum() - p) / m, atol=1e-15)


def test_kernel_paper_scale_is_diag_one_minus_p_pbar_plus_ppt_over_n():
    p = np.random.default_rng(1).random(6)
    d, u = ipdpp_kernel_parts(p)
    np.testing.assert_allclose(d, 1 - p * p.mean())
    np.testing.assert_allclose(np.outer(u, u), np.outer(p, p) / len(p))


@pytest.mark.parametrize("scale", ["n", "n_squared"])
def test_kernel_eigenvalues_in_unit_interval(scale):
    rng = np.random.default_rng(2)
    for n in (1, 2, 7, 60):
        for p in (rng.random(n), rng.choice([0.0, 1.0], n), np.ones(n)):
            eig = np.linalg.eigvalsh(ipdpp_kernel(p, scale))
            assert eig.min() >= -1e-12 and eig.max() <= 1 + 1e-12


@pytest.mark.parametrize("scale, small", [("n", 0.64), ("n_squared", 0.928)])
def test_uniform_p_spectrum(scale, small):
    np.testing.assert_allclose(np.linalg.eigvalsh(ipdpp_kernel(np.full(5, 0.6), scale)), [small] * 4 + [1.0])


def test_minors_follow_the_determinant_lemma():
    p = np.random.default_rng(3).random(6)
    s, d = ipdpp_kernel(p), 1 - p * p.mean()
    for size in range(1, 7):
        for y in map(list, itertools.combinations(range(6), size)):
            lemma = np.prod(d[y]) * (1 + np.sum(p[y] ** 2 / (6 * d[y])))
            assert np.linalg.det(s[np.ix_(y, y)]) == pytest.approx(lemma, rel=1e-12)


def test_spec_example_minor_is_0611_not_082():
    s = ipdpp_kernel([0.9, 0.2, 0.5, 0.7])
    assert np.linalg.det(s[:2, :2]) == pytest.approx(0.61105, abs=1e-12)


@pytest.mark.parametrize("p", [[], [[0.5, 0.5]], [0.2, 1.2], [-0.1, 0.5], [0.5, np.nan]])
def test_kernel_rejects_bad_probabilities(p):
    with pytest.raises(ValueError, match="p must"):
        ipdpp_kernel_parts(p)


def test_kernel_rejects_unknown_scale_and_accepts_tensors():
    with pytest.raises(ValueError, match="n_squared"):
        ipdpp_kernel_parts([0.5], scale="n2")
    p = torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64)
    np.testing.assert_array_equal(ipdpp_kernel_parts(p)[0], ipdpp_kernel_parts(p.numpy())[0])


# ---------------------------------------------------------------- exact k-DPP


@pytest.mark.parametrize("n, k, u_scale", [(5, 2, 1.5), (6, 3, 3.0), (8, 4, 0.5), (7, 1, 2.0), (6, 5, 1.0)])
def test_exact_sampler_law_equals_normalised_determinants(n, k, u_scale):
    d, u = diag_plus_rank_one(n, seed=n * 10 + k, u_scale=u_scale)
    subsets, law = enumerated_law(np.diag(d) + np.outer(u, u), k)
    kdpp = KDPP(d, u, k)
    np.testing.assert_allclose([np.exp(kdpp.log_probability(y)) for y in subsets], law, rtol=1e-10, atol=1e-15)


def test_exact_sampler_law_on_the_paper_kernel():
    p = np.random.default_rng(4).random(7)
    subsets, law = enumerated_law(ipdpp_kernel(p), 3)
    kdpp = KDPP(*ipdpp_kernel_parts(p), 3)
    np.testing.assert_allclose([np.exp(kdpp.log_probability(y)) for y in subsets], law, rtol=1e-10)


def test_diagonal_kernel_chi_square():
    draws = KDPP([1.0, 2.0, 3.0], [0.0, 0.0, 0.0], 2).sample_many(np.random.default_rng(5), 30_000)
    subsets = np.array([[0, 1], [0, 2], [1, 2]])
    assert chi2_p(draws, subsets, np.array([2, 3, 6]) / 11) > CHI2_P_MIN


def test_exact_sampler_and_dppy_both_follow_the_enumerated_law():
    d, u = diag_plus_rank_one(5, seed=6, u_scale=1.2)
    kernel = np.diag(d) + np.outer(u, u)
    subsets, law = enumerated_law(kernel, 2)
    ours = KDPP(d, u, 2).sample_many(np.random.default_rng(7), 20_000)
    assert chi2_p(ours, subsets, law) > CHI2_P_MIN
    _, product_law = enumerated_law(np.diag(d), 2)
    assert chi2_p(ours, subsets, product_law) < 1e-9, "the rank-one term must matter for this kernel"
    dpp, rng = FiniteDPP("likelihood", L=kernel), np.random.RandomState(8)
    theirs = [dpp.sample_exact_k_dpp(size=2, random_state=rng) for _ in range(2_000)]
    assert chi2_p(theirs, subsets, law) > CHI2_P_MIN


def test_identity_kernel_is_uniform_with_marginals_k_over_n():
    kdpp = KDPP(np.ones(5), np.zeros(5), 2)
    subsets = np.array(list(itertools.combinations(range(5), 2)))
    np.testing.assert_allclose([np.exp(kdpp.log_probability(y)) for y in subsets], 0.1, rtol=1e-12)
    draws = kdpp.sample_many(np.random.default_rng(9), 20_000)
    assert chi2_p(draws, subsets, np.full(10, 0.1)) > CHI2_P_MIN
    np.testing.assert_allclose(np.bincount(draws.ravel(), minlength=5) / len(draws), 2 / 5, atol=0.01)


@pytest.mark.parametrize("n, k", [(1, 1), (9, 0), (9, 9), (40, 7), (300, 150), (5000, 500)])
def test_every_draw_has_k_distinct_sorted_items(n, k):
    p = np.random.default_rng(n).random(n)
    kdpp = KDPP(*ipdpp_kernel_parts(p), k)
    for draw in kdpp.sample_many(np.random.default_rng(k), 3 if n > 1000 else 20):
        assert len(draw) == k == len(np.unique(draw))
        assert np.all(np.diff(draw) > 0) and (k == 0 or 0 <= draw[0] <= draw[-1] < n)


def test_large_class_draw_probabilities_follow_determinant_ratios():
    p = np.random.default_rng(10).random(5000)
    d, u = ipdpp_kernel_parts(p)
    kdpp = KDPP(d, u, 500)
    first, second = kdpp.sample_many(np.random.default_rng(11), 2)
    log_det = [np.sum(np.log(d[y])) + np.log1p(np.sum(u[y] ** 2 / d[y])) for y in (first, second)]
    assert kdpp.log_probability(first) - kdpp.log_probability(second) == pytest.approx(log_det[0] - log_det[1], abs=1e-8)
    assert p[first].mean() < p.mean() - 0.03, "low-confidence images must be favoured"


def test_keeping_every_item_is_certain():
    d, u = diag_plus_rank_one(30, seed=23)
    kdpp = KDPP(d, u, 30)
    assert kdpp.log_probability(range(30)) == 0.0 and kdpp.sample(np.random.default_rng(0)).tolist() == list(range(30))


def test_all_confident_class_degenerates_to_uniform():
    d, u = ipdpp_kernel_parts(np.ones(6))
    assert np.all(d == 0)
    kdpp = KDPP(d, u, 3)
    probs = [np.exp(kdpp.log_probability(y)) for y in itertools.combinations(range(6), 3)]
    np.testing.assert_allclose(probs, 1 / 20, rtol=1e-9)
    assert len(np.unique(KDPP(d, u, 3).sample(np.random.default_rng(0)))) == 3


@pytest.mark.parametrize("d, u, k", [([1.0, 1.0], [0.0, 0.0], 3), ([1.0, 1.0], [0.0, 0.0], -1),
                                     ([1.0, -0.5], [0.0, 0.0], 1), ([1.0, 1.0], [0.0], 1)])
def test_exact_sampler_rejects_bad_input(d, u, k):
    with pytest.raises(ValueError):
        KDPP(d, u, k)


def test_inclusion_probability_non_increasing_in_p():
    rng = np.random.default_rng(12)
    for _ in range(200):
        p = rng.random(7)
        subsets, law = enumerated_law(ipdpp_kernel(p), 3)
        inclusion = np.array([law[(subsets == i).any(axis=1)].sum() for i in range(7)])
        assert np.all(np.diff(inclusion[np.argsort(p)]) <= 1e-12)


# ---------------------------------------------------------------- the paper's Algorithm 1


def test_paper_alg1_phase1_cycles_with_acceptance_lambda_over_lambda_plus_one():
    """Acceptance 1/2, 1/3, 1/5 per pass, passes repeat until one is in: P = 15/22, 5/22, 2/22."""
    rng = np.random.default_rng(13)
    draws = [sample_kdpp_paper_alg1(np.diag([0.25, 1.0, 0.5]), 1, rng) for _ in range(3000)]
    assert chi2_p(draws, np.array([[1], [2], [0]]), np.array([15, 5, 2]) / 22) > CHI2_P_MIN


def phase1_law(accept, k):
    """Exact law of the accepted set when passes over the not-yet-accepted items (in order) repeat until k are in."""
    law = {}

    def one_pass(accepted):
        outcomes = [(accepted, 1.0)]
        for i in (i for i in range(len(accept)) if i not in accepted):
            outcomes = [(acc, pr) for acc, pr in outcomes if len(acc) == k] + [
                pair for acc, pr in outcomes if len(acc) < k
                for pair in ((acc | {i}, pr * accept[i]), (acc, pr * (1 - accept[i])))]
        return outcomes

    def finish(accepted, prob):
        outcomes = one_pass(accepted)
        stay = sum(pr for acc, pr in outcomes if acc == accepted)
        for acc, pr in outcomes:
            if acc != accepted and len(acc) == k:
                law[acc] = law.get(acc, 0.0) + prob * pr / (1 - stay)
            elif acc != accepted:
                finish(acc, prob * pr / (1 - stay))

    finish(frozenset(), 1.0)
    return law


def test_paper_alg1_phase1_revisits_only_unaccepted_vectors():
    eig, item_of_rank = np.array([0.2, 0.1, 0.05]), [1, 2, 0]
    law = phase1_law(eig / (eig + 1), 2)
    subsets = np.array([sorted(item_of_rank[r] for r in ranks) for ranks in law])
    kernel, rng = np.diag(eig[np.argsort(item_of_rank)]), np.random.default_rng(22)
    draws = [sample_kdpp_paper_alg1(kernel, 2, rng) for _ in range(2000)]
    assert chi2_p(draws, subsets, np.array(list(law.values()))) > CHI2_P_MIN


def literal_phase2(basis, k):
    """Phase 2 as printed: argmax of the row norms, then an orthonormal basis of span(V) ∩ e_i^⊥."""
    chosen = []
    for _ in range(k):
        i = int(np.argmax((basis**2).sum(axis=1)))
        chosen.append(i)
        j = int(np.argmax(np.abs(basis[i])))
        reduced = basis - np.outer(basis[:, j], basis[i] / basis[i, j])
        basis = np.linalg.qr(np.delete(reduced, j, axis=1))[0]
    return sorted(chosen)


def twin_basis(n=20):
    """An orthonormal 4-column basis whose rows 0 and 1 are identical and have the largest norms (1/2 each)."""
    basis = np.zeros((n, 4))
    basis[:2, 0] = np.sqrt(0.5)
    basis[2:, 1:] = np.linalg.qr(np.random.default_rng(14).normal(size=(n - 2, 3)))[0]
    return basis


@pytest.mark.parametrize("twin_rows", [False, True])
def test_paper_alg1_phase2_is_the_deterministic_argmax_projection(twin_rows):
    basis = twin_basis() if twin_rows else np.linalg.qr(np.random.default_rng(14).normal(size=(9, 4)))[0]
    expected = literal_phase2(basis, 4)
    assert not twin_rows or (0 in expected and 1 not in expected), "a chosen item's twin has nothing left"
    for seed in range(3):
        assert sample_kdpp_paper_alg1(basis @ basis.T, 4, np.random.default_rng(seed)).tolist() == expected


def test_paper_alg1_accepts_kernel_parts_and_rejects_large_k():
    p = np.random.default_rng(15).random(30)
    from_parts = sample_kdpp_paper_alg1(ipdpp_kernel_parts(p), 10, np.random.default_rng(1))
    assert len(np.unique(from_parts)) == 10
    assert from_parts.tolist() == sample_kdpp_paper_alg1(ipdpp_kernel(p), 10, np.random.default_rng(1)).tolist()
    with pytest.raises(ValueError, match="positive eigenvalues"):
        sample_kdpp_paper_alg1(np.diag([1.0, 0.0, 0.0]), 2, np.random.default_rng(0))


# ---------------------------------------------------------------- subsets of a training set


def assert_small_classes_kept_whole(subset, labels, k):
    for c in range(labels.max() + 1):
        members = np.flatnonzero(labels == c)
        if len(members) <= k:
            assert np.isin(members, subset).all()


def test_cifar10_lt_subset_sizes():
    labels = shuffled_labels(CIFAR10_LT_IF100)
    probs = np.random.default_rng(16).random(len(labels))
    subset = select_subset(probs, labels, 500)
    counts = subset_class_counts(subset, labels, 10)
    assert counts.tolist() == [500] * 5 + [387, 232, 139, 83, 50] and counts.sum() == 3391 == len(np.unique(subset))
    assert_small_classes_kept_whole(subset, labels, 500)
    head = labels == 0
    assert probs[subset[labels[subset] == 0]].mean() < probs[head].mean()


def test_cifar100_lt_subset_sizes():
    labels = shuffled_labels(CIFAR100_LT_IF100)
    subset = select_subset(np.random.default_rng(17).random(len(labels)), labels, 50)
    counts = subset_class_counts(subset, labels, 100)
    assert len(subset) == 3446 and (counts == 50).sum() == 50
    assert_small_classes_kept_whole(subset, labels, 50)


@pytest.mark.parametrize("sampler", ["exact_kdpp", "paper_alg1", "reference_uniform"])
def test_every_sampler_caps_each_class(sampler):
    labels = shuffled_labels([60, 30, 12, 5])
    probs = np.random.default_rng(18).random(len(labels))
    assert subset_class_counts(select_subset(probs, labels, 10, sampler=sampler), labels, 4).tolist() == [10, 10, 10, 5]
    per_class = select_subset(probs, labels, [20, 10, 3, 5], sampler=sampler)
    assert subset_class_counts(per_class, labels, 4).tolist() == [20, 10, 3, 5]


def test_exact_draw_of_a_class_is_seeded_by_seed_round_and_class():
    labels = shuffled_labels([60, 30, 12, 5])
    probs = np.random.default_rng(19).random(len(labels))
    subset = select_subset(probs, labels, 10, kernel_scale="n_squared", seed=3, round=2)
    members = np.flatnonzero(labels == 1)
    kdpp = KDPP(*ipdpp_kernel_parts(probs[members], "n_squared"), 10)
    expected = members[kdpp.sample(np.random.default_rng([3, 2, 1]))]
    assert subset[labels[subset] == 1].tolist() == sorted(expected.tolist())
    assert subset.tolist() == select_subset(probs, labels, 10, kernel_scale="n_squared", seed=3, round=2).tolist()
    assert subset.tolist() != select_subset(probs, labels, 10, kernel_scale="n_squared", seed=3, round=3).tolist()
    assert subset.tolist() != select_subset(probs, labels, 10, kernel_scale="n_squared", seed=4, round=2).tolist()


def test_select_subset_rejects_unknown_sampler():
    with pytest.raises(ValueError, match="exact_kdpp.*paper_alg1.*reference_uniform"):
        select_subset(np.full(4, 0.5), np.array([0, 0, 1, 1]), 1, sampler="kdpp")


# ---------------------------------------------------------------- reference_uniform (Q1-Q3)


def dropped(subset, n):
    return sorted(set(range(n)) - set(subset.tolist()))


def test_reference_first_visited_class_is_a_plain_choice():
    cifar10 = reference_uniform_subsets(CIFAR10_LT_IF100, 500)
    assert cifar10[4].tolist() == np.random.RandomState(42).choice(645, 500, replace=False).tolist()
    assert cifar10[4][:5].tolist() == [632, 592, 599, 291, 72]
    assert dropped(reference_uniform_subsets(CIFAR100_LT_IF100, 50)[49], 51) == [38]


def test_reference_later_classes_and_whole_small_classes():
    cifar10 = reference_uniform_subsets(CIFAR10_LT_IF100, 500)
    assert cifar10[3][:5].tolist() == [969, 212, 416, 677, 550]
    assert cifar10[5].tolist() == list(range(387))
    cifar100 = reference_uniform_subsets(CIFAR100_LT_IF100, 50)
    assert CIFAR100_LT_IF100[48] == 53 and dropped(cifar100[48], 53) == [9, 33, 35]


def test_reference_ignores_probabilities_and_repeats_every_draw():
    labels = shuffled_labels(CIFAR10_LT_IF100)
    probs = np.random.default_rng(20).random(len(labels))
    first = select_subset(probs, labels, 500, sampler="reference_uniform", seed=1, round=0)
    again = select_subset(1 - probs, labels, 500, sampler="reference_uniform", seed=7, round=5)
    assert first.tolist() == again.tolist()
    assert first.tolist() == select_subset(None, labels, 500, sampler="reference_uniform").tolist()
    class_4 = np.flatnonzero(labels == 4)
    expected = class_4[reference_uniform_subsets(CIFAR10_LT_IF100, 500)[4]]
    assert first[labels[first] == 4].tolist() == sorted(expected.tolist())


def dppy_reference_subsets(class_sizes, k, kernel_of_class, num_visited=None):
    """What the released code does: one RandomState(42), DPPy's MCMC k-DPP per visited class, the chain's start."""
    rng, kept = np.random.RandomState(42), {}
    for c in reversed(range(len(class_sizes))):
        if class_sizes[c] <= k:
            continue
        if len(kept) == num_visited:
            break
        dpp = FiniteDPP("likelihood", L=kernel_of_class(c))
        dpp.sample_mcmc_k_dpp(size=k, nb_iter=10, random_state=rng)
        chain = dpp.list_of_samples[0]
        assert any(state != chain[0] for state in chain), "the exchange moves must run"
        kept[c] = chain[0]
    return kept


def test_reference_matches_dppy_mcmc_whatever_the_kernel():
    sizes, k, rng = [40, 25, 12, 6], 10, np.random.default_rng(21)
    paper_kernels = [ipdpp_kernel(rng.random(n), "n_squared") for n in sizes]
    wild_kernels = [np.diag(np.exp(3 * rng.normal(size=n))) + 0.1 for n in sizes]
    ours = reference_uniform_subsets(sizes, k)
    for kernels in (paper_kernels, wild_kernels):
        theirs = dppy_reference_subsets(sizes, k, kernels.__getitem__)
        assert {c: ours[c].tolist() for c in theirs} == theirs
    assert ours[3].tolist() == list(range(6))


def test_reference_spec_numbers_are_what_dppy_draws():
    kernels = {c: ipdpp_kernel(np.random.default_rng(c).random(n), "n_squared") for c, n in enumerate(CIFAR10_LT_IF100)}
    theirs = dppy_reference_subsets(CIFAR10_LT_IF100, 500, kernels.__getitem__, num_visited=2)
    assert theirs[4][:5] == [632, 592, 599, 291, 72] and theirs[3][:5] == [969, 212, 416, 677, 550]
