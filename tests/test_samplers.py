import itertools
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from lvmbench.data.samplers import ClassBalancedSampler, StudyWeightedSampler

# Very imbalanced: 2000, 200, 20 and 2 instances of classes 0..3, shuffled.
LABELS = np.random.default_rng(0).permutation(np.repeat([0, 1, 2, 3], [2000, 200, 20, 2]))


def test_class_frequencies_are_uniform():
    n = 40_000
    sampler = ClassBalancedSampler(LABELS, num_samples=n, seed=1)
    drawn = LABELS[list(sampler)]
    observed = np.bincount(drawn, minlength=4)
    expected = n / 4
    chi2 = ((observed - expected) ** 2 / expected).sum()
    assert chi2 < 16.27  # chi-square, 3 degrees of freedom, p = 0.001
    # instances within the rarest class are both drawn, about equally often
    rare = np.flatnonzero(LABELS == 3)
    picks = [(np.asarray(list(sampler)) == i).sum() for i in rare]
    assert min(picks) > 0.4 * sum(picks)


def test_deterministic_given_seed_and_epoch():
    a = ClassBalancedSampler(LABELS, 500, seed=7)
    b = ClassBalancedSampler(LABELS, 500, seed=7)
    first = list(a)
    assert first == list(b) == list(a)  # same seed, same epoch, and repeatable
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(ClassBalancedSampler(LABELS, 500, seed=8)) != first
    assert len(a) == 500 and all(isinstance(i, int) for i in first)


def test_resume_mid_epoch():
    sampler = ClassBalancedSampler(LABELS, 100, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2)
    head = list(itertools.islice(iter(sampler), 37))
    state = sampler.state_dict()
    assert state["epoch"] == 2 and state["position"] == 37

    resumed = ClassBalancedSampler(LABELS, 100, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what a training loop does at the start of the epoch
    assert head + list(resumed) == full
    assert list(resumed) == full  # the next pass starts the epoch afresh

    # with a prefetching loader the consumed count is passed explicitly
    other = ClassBalancedSampler(LABELS, 100, seed=3)
    other.load_state_dict(sampler.state_dict(consumed=10))
    assert list(other) == full[10:]
    with pytest.raises(ValueError):
        ClassBalancedSampler(LABELS, 100, seed=4).load_state_dict(state)


@pytest.mark.parametrize("num_samples", [120, 121])
def test_ranks_partition_the_global_sequence(num_samples):
    replicas = 4
    ranks = [ClassBalancedSampler(LABELS, num_samples, seed=5, num_replicas=replicas, rank=r)
             for r in range(replicas)]
    for s in ranks:
        s.set_epoch(3)
    slices = [list(s) for s in ranks]
    per_rank = -(-num_samples // replicas)
    assert all(len(s) == len(sl) == per_rank for s, sl in zip(ranks, slices))
    merged = [None] * (per_rank * replicas)
    for r, sl in enumerate(slices):
        merged[r::replicas] = sl
    assert merged == list(ranks[0].global_indices(3))
    single = ClassBalancedSampler(LABELS, per_rank * replicas, seed=5)
    single.set_epoch(3)
    assert merged == list(single)


def test_works_with_dataloader():
    data = torch.arange(len(LABELS))
    loader = DataLoader(data, batch_size=16, sampler=ClassBalancedSampler(LABELS, 64, seed=0))
    batches = list(loader)
    assert len(batches) == 4 and all(len(b) == 16 for b in batches)


def refused(build, message):
    with pytest.raises(ValueError) as caught:
        build()
    assert str(caught.value) == message


def test_invalid_arguments():
    refused(lambda: ClassBalancedSampler([], 10), "labels is empty")
    refused(lambda: ClassBalancedSampler(LABELS, 0), "num_samples must be positive, got 0")
    refused(lambda: ClassBalancedSampler(LABELS, 10, num_replicas=2, rank=2), "invalid rank 2 for 2 replicas")
    refused(lambda: StudyWeightedSampler([], 10), "need labels and epoch_samples > 0")
    refused(lambda: StudyWeightedSampler(LABELS, 0), "need labels and epoch_samples > 0")
    # the smallest valid ones: one label, one sample
    assert len(ClassBalancedSampler([3], 1)) == 1
    assert list(StudyWeightedSampler([3], 1).global_indices(0)) == [0]


def test_every_class_is_drawn_from_its_own_instances_only():
    """A singleton first class: an off-by-one in where each class's instances start would draw class 1
    in its place."""
    labels = np.array([0, 1, 1, 2, 2, 2])
    drawn = np.asarray(list(ClassBalancedSampler(labels, num_samples=6000, seed=2)))
    assert np.bincount(labels[drawn], minlength=3).min() > 1800  # about 2000 each
    assert sorted(set(drawn.tolist())) == list(range(6))


def test_a_state_of_another_sampler_is_refused():
    state = ClassBalancedSampler(LABELS, 100, seed=3).state_dict()
    for other in (ClassBalancedSampler(LABELS, 99, seed=3), ClassBalancedSampler(LABELS, 100, seed=3, num_replicas=2)):
        with pytest.raises(ValueError, match="state has"):
            other.load_state_dict(state)


def test_the_study_sampler_depends_only_on_seed_and_epoch():
    a, b = StudyWeightedSampler(LABELS, 300, seed=5), StudyWeightedSampler(LABELS, 300, seed=5)
    assert np.array_equal(a.global_indices(2), b.global_indices(2))
    assert not np.array_equal(a.global_indices(2), a.global_indices(3))
    assert not np.array_equal(a.global_indices(2), StudyWeightedSampler(LABELS, 300, seed=6).global_indices(2))
    with pytest.raises(ValueError, match="need labels and epoch_samples > 0"):
        StudyWeightedSampler(LABELS, 0)


@pytest.mark.parametrize("balanced", ["uniform", "study"])
def test_class_balanced_batches_follow_the_seed(balanced):
    from lvmbench.train.batches import StepBatchSampler

    def batches(seed, start=0):
        return list(StepBatchSampler(LABELS, 16, "balanced", seed=seed, steps=40, start_step=start, balanced=balanced))

    first = batches(3)
    torch.manual_seed(99)  # a sampler draws from its seed alone: not from the global RNGs a run also uses
    np.random.seed(99)
    random.seed(99)
    torch.rand(7), np.random.rand(7), random.random()
    assert batches(3) == first
    assert [i for i, _ in batches(3)[0]] != [i for i, _ in batches(4)[0]]  # another seed, other draws
    assert batches(3, start=30) == batches(3)[30:] and len(StepBatchSampler(
        LABELS, 16, "balanced", seed=3, steps=40, start_step=30, balanced=balanced)) == 10
    if balanced == "study":  # 40 steps over the study's 32 epochs: one batch per epoch
        assert StepBatchSampler(LABELS, 16, "balanced", seed=3, steps=40, balanced="study").per_epoch == 1
