"""Samplers: docs/methods/baselines.md §7 plus seeding, epochs and distributed slicing."""

import numpy as np
import pytest
import torch

from longtail.data.samplers import (
    ClassAwareSampler,
    ClassBalancedSampler,
    InstanceSampler,
    ProgressiveSampler,
    SquareRootSampler,
)

CIFAR10_IF100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def shuffled_labels(counts, seed=0):
    """Labels with the given counts, in random order (classes not sorted by frequency)."""
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(len(counts)), counts))


@pytest.fixture(scope="module")
def cifar_labels():
    return shuffled_labels(CIFAR10_IF100)


@pytest.fixture(scope="module")
def class_aware_sequence(cifar_labels):
    return np.array(list(ClassAwareSampler(cifar_labels, num_samples_cls=4, seed=3)))


def test_class_aware_length_and_exact_counts(cifar_labels, class_aware_sequence):
    sampler = ClassAwareSampler(cifar_labels, num_samples_cls=4, seed=3)
    assert len(sampler) == 50_000 == len(class_aware_sequence)
    assert np.bincount(cifar_labels[class_aware_sequence]).tolist() == [5000] * 10


def test_class_aware_runs_of_k(cifar_labels, class_aware_sequence):
    runs = cifar_labels[class_aware_sequence].reshape(-1, 4)
    assert (runs == runs[:, :1]).all()
    assert (runs[1:, 0] != runs[:-1, 0]).mean() > 0.8


def test_class_aware_classes_cycle_in_reshuffled_passes(cifar_labels, class_aware_sequence):
    steps = cifar_labels[class_aware_sequence][::4].reshape(-1, 10)
    assert all(sorted(row) == list(range(10)) for row in steps)
    assert len({tuple(row) for row in steps}) > 1


def test_class_aware_no_repeat_before_exhaustion(cifar_labels, class_aware_sequence):
    drawn_labels = cifar_labels[class_aware_sequence]
    for c, n_c in enumerate(CIFAR10_IF100):
        members = set(np.flatnonzero(cifar_labels == c).tolist())
        drawn = class_aware_sequence[drawn_labels == c]
        for start in range(0, len(drawn), n_c):
            chunk = drawn[start : start + n_c].tolist()
            assert len(set(chunk)) == len(chunk) and set(chunk) <= members
            if len(chunk) == n_c:
                assert set(chunk) == members


def test_class_aware_k_not_dividing_n_max():
    labels = shuffled_labels([7, 3, 2])
    seq = list(ClassAwareSampler(labels, num_samples_cls=3))
    assert len(seq) == 21
    assert np.bincount(labels[seq], minlength=3).min() >= 6


@pytest.mark.parametrize("make", [
    lambda y, **kw: InstanceSampler(y, **kw),
    lambda y, **kw: ClassAwareSampler(y, **kw),
    lambda y, **kw: SquareRootSampler(y, **kw),
    lambda y, **kw: ClassBalancedSampler(y, **kw),
    lambda y, **kw: ProgressiveSampler(y, max_epochs=10, **kw),
])
def test_seed_and_epoch(make):
    labels = shuffled_labels([40, 20, 9, 3])
    a, b, other = make(labels, seed=5), make(labels, seed=5), make(labels, seed=6)
    assert list(a) == list(b)
    assert list(a) != list(other)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)


@pytest.mark.parametrize("make", [
    lambda y, **kw: InstanceSampler(y, **kw),
    lambda y, **kw: ClassAwareSampler(y, **kw),
    lambda y, **kw: SquareRootSampler(y, **kw),
    lambda y, **kw: ProgressiveSampler(y, max_epochs=4, **kw),
])
@pytest.mark.parametrize("n", [72, 73])
def test_distributed_slices_interleave_to_single_process(make, n):
    labels = shuffled_labels([n - 13, 10, 3])
    single = make(labels, seed=1, num_replicas=1, rank=0)
    ranks = [make(labels, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    for sampler in [single, *ranks]:
        sampler.set_epoch(2)
    full = list(single)
    parts = [list(s) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == len(ranks[0]) == len(ranks[1]) == -(-len(full) // 2)
    interleaved = [i for pair in zip(*parts) for i in pair]
    assert interleaved[: len(full)] == full
    assert interleaved[len(full) :] == full[: len(interleaved) - len(full)]


def test_labels_as_list_array_tensor():
    labels = shuffled_labels([6, 3, 2])
    seqs = [list(ClassAwareSampler(y, seed=0)) for y in (labels.tolist(), labels, torch.as_tensor(labels))]
    assert seqs[0] == seqs[1] == seqs[2]


def test_sqrt_probabilities_and_frequencies():
    labels = np.repeat([0, 1], [5000, 50])
    sampler = SquareRootSampler(labels, q=0.5, seed=0)
    expected = torch.tensor([0.909091, 0.090909], dtype=torch.float64)
    assert torch.allclose(sampler.class_probabilities, expected, atol=1e-6)
    draws = []
    for epoch in range(199):
        sampler.set_epoch(epoch)
        draws.extend(sampler)
    assert len(draws) >= 1_000_000
    freq = np.bincount(labels[draws], minlength=2) / len(draws)
    assert np.abs(freq - np.array([0.909091, 0.090909])).max() < 0.002


def test_sqrt_unsorted_labels_and_q_extremes():
    labels = shuffled_labels([50, 5000])
    sampler = SquareRootSampler(labels)
    expected = torch.tensor([0.090909, 0.909091], dtype=torch.float64)
    assert torch.allclose(sampler.class_probabilities, expected, atol=1e-6)
    instance = torch.tensor([50, 5000], dtype=torch.float64) / 5050
    assert torch.allclose(SquareRootSampler(labels, q=1.0).class_probabilities, instance)
    balanced = ClassBalancedSampler(labels)
    assert isinstance(balanced, SquareRootSampler) and balanced.q == 0.0
    assert torch.allclose(balanced.class_probabilities, torch.full((2,), 0.5, dtype=torch.float64))
    assert len(balanced) == 5050


def test_progressive_endpoints():
    counts = [5000, 500, 50]
    labels = shuffled_labels(counts)
    sampler = ProgressiveSampler(labels, max_epochs=10)
    instance = torch.tensor(counts, dtype=torch.float64) / sum(counts)
    assert torch.allclose(sampler.class_probabilities, instance)
    sampler.set_epoch(5)
    assert torch.allclose(sampler.class_probabilities, 0.5 * instance + 0.5 / 3)
    sampler.set_epoch(10)
    assert torch.allclose(sampler.class_probabilities, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert len(sampler) == len(labels)


def test_class_count_errors():
    labels = [0, 1, 2, 2]
    with pytest.raises(ValueError, match=r"num_classes=2.*3 distinct"):
        ClassAwareSampler(labels, num_classes=2)
    with pytest.raises(ValueError, match=r"num_classes=5.*3 distinct"):
        SquareRootSampler(labels, num_classes=5)
    with pytest.raises(ValueError, match="num_samples_cls"):
        ClassAwareSampler(labels, num_samples_cls=0)
    with pytest.raises(ValueError, match="non-empty"):
        InstanceSampler([])
    with pytest.raises(ValueError, match="rank"):
        InstanceSampler(labels, num_replicas=2, rank=2)
    assert ClassAwareSampler(labels, num_classes=3).num_classes == 3
