"""labs_utils.midepoch: augmentation seeded per (seed, epoch, index), the same in every process."""

import pickle

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from labs_utils.midepoch import Jitter, sample_seed


def _base(n=12):
    g = torch.Generator().manual_seed(3)
    return TensorDataset(
        torch.randn(n, 4, generator=g), torch.arange(n) % 3, torch.arange(n)
    )


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
    assert all(
        torch.equal(x, y) for (x, *_), (y, *_) in zip(main, workers, strict=True)
    )


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
    base = TensorDataset(
        torch.zeros(3, 2, dtype=torch.float64), torch.tensor([5, 6, 7])
    )
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
