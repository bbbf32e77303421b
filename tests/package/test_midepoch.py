"""labs_utils.midepoch: augmentation seeded per (seed, epoch, index), the same in every process;
(epoch, index) pairs from a sampler carry the epoch to workers that outlive an epoch."""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, Sampler, SequentialSampler, TensorDataset

from labs_utils.midepoch import Jitter, sample_seed


def _base(n=12):
    g = torch.Generator().manual_seed(3)
    return TensorDataset(torch.randn(n, 4, generator=g), torch.arange(n) % 3, torch.arange(n))


def test_seeded_noise_depends_on_seed_epoch_and_index_only():
    a, b = Jitter(_base(), noise=0.5, seed=7), Jitter(_base(), noise=0.5, seed=7)
    torch.manual_seed(0)
    first = a[3][0]
    torch.manual_seed(1)  # the global generator plays no part
    assert torch.equal(first, b[3][0])
    # another index
    assert not torch.equal(a[3][0] - _base()[3][0], a[4][0] - _base()[4][0])
    b.set_epoch(1)
    assert not torch.equal(first, b[3][0])  # another epoch
    # another seed
    assert not torch.equal(first, Jitter(_base(), noise=0.5, seed=8)[3][0])


def test_seeded_noise_is_the_same_in_worker_processes():
    data = Jitter(_base(), noise=0.5, seed=7)
    data.set_epoch(2)
    main = [b for b in DataLoader(data, batch_size=4)]
    workers = [b for b in DataLoader(data, batch_size=4, num_workers=2)]
    assert all(torch.equal(x, y) for (x, *_), (y, *_) in zip(main, workers, strict=True))


def test_unseeded_noise_draws_from_the_global_generator():
    data = Jitter(_base(), noise=0.5)
    torch.manual_seed(0)
    first = data[2][0]
    state = torch.get_rng_state()
    torch.manual_seed(0)
    assert torch.equal(first, data[2][0])
    assert torch.equal(state, torch.get_rng_state())  # the same draws happened
    assert not torch.equal(first, data[2][0])  # the next draw is other noise


def test_other_elements_pass_through_and_dtype_is_kept():
    base = TensorDataset(torch.zeros(3, 2, dtype=torch.float64), torch.tensor([5, 6, 7]))
    x, y = Jitter(base, noise=1.0, seed=0)[1]
    assert x.dtype == torch.float64 and y.item() == 6 and len(Jitter(base)) == 3
    x0, _ = Jitter(base, noise=0.0, seed=0)[1]
    assert torch.equal(x0, torch.zeros(2, dtype=torch.float64))


def test_pickles_for_spawned_workers():
    data = Jitter(_base(), noise=0.5, seed=7)
    data.set_epoch(3)
    copy = pickle.loads(pickle.dumps(data))
    assert copy.epoch == 3 and torch.equal(copy[5][0], data[5][0])


def test_sample_seed_is_distinct_and_in_range():
    seeds = {sample_seed(7, e, i) for e in range(20) for i in range(200)}
    assert len(seeds) == 20 * 200
    assert all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(2**40, 10**6, 10**6) < 2**63


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"noise": -0.1}, ValueError, "noise"),
        ({"noise": True}, ValueError, "noise"),
        ({"noise": "0.1"}, ValueError, "noise"),
        ({"seed": 1.5}, TypeError, "seed must be a whole number"),
        ({"seed": -1}, TypeError, "seed must be a whole number"),
        ({"seed": True}, TypeError, "seed must be a whole number"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        Jitter(_base(), **kwargs)


def test_bad_dataset_and_epoch_and_sample():
    with pytest.raises(TypeError, match="map-style dataset"):
        Jitter(iter(range(3)))
    data = Jitter(_base(), seed=0)
    with pytest.raises(TypeError, match="epoch must be a whole number"):
        data.set_epoch(-1)
    with pytest.raises(TypeError, match="epoch must be a whole number"):
        data.set_epoch(1.0)
    with pytest.raises(TypeError, match=r"dataset\[0\] should be a tuple"):
        Jitter([torch.zeros(2)])[0]


class EpochSampler(Sampler):
    """Notebook 15's fix, as a learner writes it: (epoch, index) pairs from the main process."""

    def __init__(self, sampler):
        self.sampler, self.epoch = sampler, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return len(self.sampler)

    def __iter__(self):
        return _Pairs(iter(self.sampler), self.epoch)


class _Pairs:
    """One epoch's pairs; the state is the wrapped iterator's (torchdata saves it)."""

    def __init__(self, indices, epoch):
        self.indices, self.epoch = indices, epoch

    def __iter__(self):
        return self

    def __next__(self):
        return (self.epoch, next(self.indices))

    def state_dict(self):
        return self.indices.state_dict()

    def load_state_dict(self, state):
        self.indices.load_state_dict(state)


def _noise_by_index(batches):
    """The augmented inputs of one epoch, ordered by sample index."""
    x = torch.cat([b[0] for b in batches])
    index = torch.cat([b[2] for b in batches])
    return x[index.argsort()]


def test_epoch_sampler_yields_pairs_and_jitter_takes_them():
    sampler = EpochSampler(SequentialSampler(range(4)))
    assert len(sampler) == 4 and list(sampler) == [(0, 0), (0, 1), (0, 2), (0, 3)]
    sampler.set_epoch(2)
    assert list(sampler) == [(2, 0), (2, 1), (2, 2), (2, 3)]
    data = Jitter(_base(), noise=0.5, seed=7)  # its own epoch stays 0: the pair's wins
    by_epoch = Jitter(_base(), noise=0.5, seed=7)
    by_epoch.set_epoch(2)
    assert torch.equal(data[(2, 3)][0], by_epoch[3][0])
    assert not torch.equal(data[(2, 3)][0], data[3][0])
    assert data[(2, 3)][2].item() == 3  # the other elements of sample 3


def test_persistent_workers_miss_set_epoch_but_get_the_sampler_epoch():
    """The pitfall (dataset.set_epoch never reaches persistent workers) and the fix."""
    data = Jitter(_base(), noise=0.5, seed=7)
    loader = DataLoader(data, batch_size=4, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(2):
        data.set_epoch(epoch)
        epochs.append(_noise_by_index(list(loader)))
    assert torch.equal(epochs[0], epochs[1])  # epoch 1 got epoch 0's noise

    sampler = EpochSampler(SequentialSampler(data))
    loader = DataLoader(data, batch_size=4, num_workers=2, persistent_workers=True, sampler=sampler)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        epochs.append(_noise_by_index(list(loader)))
    expected = torch.stack([data[(1, i)][0] for i in range(len(data))])
    assert torch.equal(epochs[1], expected) and not torch.equal(epochs[0], epochs[1])


@pytest.mark.filterwarnings("ignore:'set_vital' is deprecated")  # torchdata 0.11 on torch 2.13
def test_mid_epoch_resume_with_persistent_workers_is_exact():
    from torchdata.stateful_dataloader import StatefulDataLoader
    from torchdata.stateful_dataloader.sampler import RandomSampler

    def loader(seed, tag):
        data = Jitter(_base(16), noise=0.5, seed=7)
        sampler = RandomSampler(data, generator=torch.Generator().manual_seed(seed))
        return StatefulDataLoader(
            data,
            sampler=EpochSampler(sampler) if tag else sampler,
            batch_size=4,
            num_workers=2,
            persistent_workers=True,
            generator=torch.Generator().manual_seed(seed + 1),
        )

    def start(run, epoch):
        run.dataset.set_epoch(epoch)
        if isinstance(run.sampler, EpochSampler):
            run.sampler.set_epoch(epoch)
        return iter(run)

    for tag, exact in [(False, False), (True, True)]:
        straight = loader(0, tag)
        reference = [list(start(straight, epoch)) for epoch in range(3)]
        crashed = loader(0, tag)
        list(start(crashed, 0))
        batches = start(crashed, 1)
        next(batches), next(batches)  # two batches of epoch 1, then the crash
        state = crashed.state_dict()
        del batches, crashed
        resumed = loader(123, tag)
        resumed.load_state_dict(state)
        rest = [list(start(resumed, epoch)) for epoch in (1, 2)]
        expected = [reference[1][2:], reference[2]]
        same = all(
            torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
            for got, want in zip(rest, expected, strict=True)
            for a, b in zip(got, want, strict=True)
        )
        assert same is exact


def test_a_pair_with_a_bad_epoch_or_shape_is_refused():
    data = Jitter(_base(), seed=0)
    with pytest.raises(ValueError, match="too many values to unpack"):
        data[(1, 2, 3)]
    with pytest.raises(TypeError, match="epoch of an \\(epoch, index\\) pair must be"):
        data[(-1, 2)]
