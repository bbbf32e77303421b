"""Random data augmentation that a mid-epoch resume can reproduce (scaffolding for notebook 15).

``Jitter(dataset, noise, seed=None)`` adds Gaussian noise to each sample's first element. With
``seed=None`` the noise comes from torch's global generator, which a resumed loader's new
workers re-seed from the start of the epoch, so a resume gets other noise. With ``seed=<int>``
each sample's generator is seeded with ``(seed, epoch, index)``: call ``set_epoch`` before each
epoch, or let a sampler yield ``(epoch, index)`` pairs (which win). It lives in a module because
``spawn`` worker processes import the dataset's class by name.
"""

from __future__ import annotations

import numbers
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["Jitter", "sample_seed"]

_SPAN = 1_000_003  # a prime above any epoch or index these lessons use


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of sample ``index`` in ``epoch``, the same in every process: distinct for every
    (epoch, index) pair below 1,000,003 with a given ``seed`` below 9,000,000."""
    return ((seed * _SPAN + epoch) * _SPAN + index) % 2**63


def _whole(value: Any, what: str, *, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        extra = " or None" if allow_none else ""
        raise TypeError(f"Jitter: {what} must be a whole number >= 0{extra}, got {value!r}")
    return int(value)


class Jitter(Dataset):
    """``dataset[i]`` with Gaussian noise (std ``noise``) added to its first element.

    ``dataset`` is a map-style dataset whose samples are tuples such as ``(x, y)`` or
    ``(x, y, index)``; the other elements pass through unchanged. See the module docstring for
    ``seed``.
    """

    def __init__(self, dataset: Dataset, noise: float = 0.1, seed: int | None = None):
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"Jitter needs a map-style dataset (with __getitem__ and __len__), got "
                f"{type(dataset).__name__}; wrap tensors with TensorDataset(x, y)"
            )
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) or noise < 0:
            raise ValueError(f"Jitter: noise is a standard deviation >= 0, got {noise!r}")
        self.dataset, self.noise = dataset, float(noise)
        self.seed = _whole(seed, "seed", allow_none=True)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Use the noise of ``epoch`` (only with a seed: without one the noise is not tied to epochs)."""
        self.epoch = _whole(epoch, "epoch")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int | tuple[int, int]) -> tuple:
        epoch = self.epoch
        if isinstance(index, tuple):  # (epoch, index), from a sampler that knows it
            epoch, index = index
            epoch = _whole(epoch, "the epoch of an (epoch, index) pair")
        sample = self.dataset[index]
        if not isinstance(sample, (tuple, list)) or not sample:
            raise TypeError(
                f"Jitter: dataset[{index}] should be a tuple such as (x, y), got "
                f"{type(sample).__name__}"
            )
        x = sample[0]
        if self.seed is None:
            generator = None  # torch's global generator: in a worker, the worker's own
        else:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, epoch, int(index)))
        noisy = x + self.noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return (noisy, *sample[1:])
