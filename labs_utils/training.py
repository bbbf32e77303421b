"""Small training and evaluation loops (scaffolding: the lessons are about saving, not training)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn as nn

__all__ = ["train_epoch", "evaluate"]


def train_epoch(model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer) -> float:
    """One pass over ``loader`` with the cross-entropy loss; returns the mean loss."""
    model.train()
    total, count = 0.0, 0
    for x, y in loader:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(x)
        count += len(x)
    if count == 0:
        raise ValueError("train_epoch() got an empty loader: check the dataset and batch size")
    return total / count


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: Iterable, *, device: str | torch.device = "cpu"
) -> dict[str, float]:
    """Mean cross-entropy loss and accuracy over ``loader`` in eval mode, then the mode it had."""
    was_training = model.training
    model.eval()
    total, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        out = model(x)
        total += nn.functional.cross_entropy(out, y).item() * len(x)
        correct += (out.argmax(1) == y).sum().item()
        count += len(x)
    model.train(was_training)
    if count == 0:
        raise ValueError("evaluate() got an empty loader: check the dataset and batch size")
    return {"loss": total / count, "accuracy": correct / count}
