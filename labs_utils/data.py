"""Tiny deterministic data sets, made on the fly (nothing to download)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, TensorDataset

__all__ = ["blobs", "tiny_images", "make_loaders"]


def blobs(
    n_samples: int = 512, n_features: int = 10, n_classes: int = 2, *, noise=1.0, seed: int = 0
) -> TensorDataset:
    """Gaussian blobs: ``n_classes`` clusters in ``n_features`` dimensions, as a ``TensorDataset``
    of float32 features and int64 labels; the same seed gives the same data on any machine.
    """
    if n_samples < 1 or n_features < 1 or n_classes < 2:
        raise ValueError(
            "blobs() needs n_samples >= 1, n_features >= 1 and n_classes >= 2, "
            f"got {n_samples}, {n_features}, {n_classes}"
        )
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_classes, n_features, generator=g) * 3.0
    y = torch.arange(n_samples) % n_classes
    y = y[torch.randperm(n_samples, generator=g)]
    x = centers[y] + noise * torch.randn(n_samples, n_features, generator=g)
    return TensorDataset(x, y)


def tiny_images(
    n_samples: int = 256, *, channels: int = 1, size: int = 16, n_classes: int = 4, seed: int = 0
) -> TensorDataset:
    """Small images whose class is a bright quadrant (0: top-left ... 3: bottom-right), plus noise."""
    if n_classes not in (2, 3, 4):
        raise ValueError(
            f"tiny_images() supports 2 to 4 classes (one per quadrant), got {n_classes}"
        )
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n_samples,), generator=g)
    x = 0.5 * torch.randn(n_samples, channels, size, size, generator=g)
    h = size // 2
    for cls in range(n_classes):
        r, c = divmod(cls, 2)
        idx = y == cls
        x[idx, :, r * h : (r + 1) * h, c * h : (c + 1) * h] += 1.5
    return TensorDataset(x, y)


def make_loaders(
    dataset: TensorDataset, *, batch_size: int = 32, seed: int = 0
) -> tuple[DataLoader, DataLoader]:
    """Split ``dataset`` into train (3/4) and validation (1/4) loaders. The training loader
    shuffles with its own seeded generator, so two calls give the same batches in the same order."""
    n_val = max(1, len(dataset) // 4)
    perm = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))
    train = torch.utils.data.Subset(dataset, perm[n_val:].tolist())
    val = torch.utils.data.Subset(dataset, perm[:n_val].tolist())
    shuffle = torch.Generator().manual_seed(seed + 1)
    train_loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=shuffle)
    return train_loader, DataLoader(val, batch_size=batch_size, shuffle=False)
