"""Checks for notebooks/19_weights_from_elsewhere.ipynb: each answer is run on cases and
compared with a reference; the hint comes from the known mistake that behaves like it."""

from __future__ import annotations

import math

import numpy as np
import torch

from . import Case, behaves_like, exercise

NB = "19_weights_from_elsewhere"


def _dense(kernel, bias):
    return {
        "weight": torch.tensor(kernel.T, dtype=torch.float32),
        "bias": torch.tensor(bias, dtype=torch.float32),
    }


def _arrays(n_in, n_out, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((n_in, n_out)).astype(dtype)
    bias = rng.standard_normal(n_out).astype(dtype)
    return kernel, bias


def _dense_cases():
    return [
        Case("a kernel of shape (3, 2)", lambda: _arrays(3, 2)),
        Case("a square kernel (4, 4)", lambda: _arrays(4, 4, seed=1)),
        Case(
            "float64 arrays (a Keras model saved in float64)",
            lambda: _arrays(5, 3, np.float64, seed=2),
        ),
        Case("one output unit (6, 1)", lambda: _arrays(6, 1, seed=3)),
    ]


def _in_place(kernel, bias):
    kernel[...] = 0  # a learner "clearing" the input after use
    return _dense(np.zeros((kernel.shape[1], kernel.shape[0])), bias)


_DENSE_MISTAKES = [
    (
        lambda k, b: {
            "weight": torch.tensor(k, dtype=torch.float32),
            "bias": torch.tensor(b, dtype=torch.float32),
        },
        "the weight has the kernel's shape (in, out); nn.Linear stores (out, in): transpose it with `kernel.T`",
    ),
    (
        lambda k, b: {
            "weight": torch.tensor(k.reshape(k.shape[1], k.shape[0]), dtype=torch.float32),
            "bias": torch.tensor(b, dtype=torch.float32),
        },
        "`reshape` gives the right shape but puts the numbers in the wrong places: a transpose (`kernel.T`) is needed, not a reshape",
    ),
    (
        lambda k, b: {"weight": k.T, "bias": b},
        "the values are NumPy arrays: a state_dict holds torch tensors (`torch.tensor(kernel.T, dtype=torch.float32)`)",
    ),
    (
        lambda k, b: {"weight": torch.tensor(k.T), "bias": torch.tensor(b)},
        "float64 arrays stay float64: ask for `dtype=torch.float32`",
    ),
    (
        lambda k, b: {"weight": torch.tensor(k.T, dtype=torch.float32), "bias": b},
        "the bias is still a NumPy array: make it a float32 tensor too",
    ),
]


@exercise("keras_dense_to_linear", notebook=NB)
def keras_dense_to_linear(fn) -> str:
    """``fn(kernel, bias)`` returns nn.Linear's state_dict: weight = kernel.T, float32 tensors."""
    behaves_like(fn, _dense, _dense_cases(), _DENSE_MISTAKES)
    return "weight is the kernel transposed to (out, in), both float32 tensors, the arrays left as they were (tried on four kernels, one square, one float64)."


def _merge(partitions, param_shapes, order=sorted):
    """The reference (rank order: ``sorted``); a known mistake with another ``order``."""
    state_dict = {}
    ranks = order(partitions)
    for g, shapes in enumerate(param_shapes):
        vector = torch.cat([partitions[r][g] for r in ranks])
        offset = 0
        for name, shape in shapes.items():
            n = math.prod(shape)
            state_dict[name] = vector[offset : offset + n].reshape(shape).clone()
            offset += n
    return state_dict


def _zero(groups, world, order=None, seed=0):
    """(partitions, param_shapes) for parameter groups given as {name: shape} dicts."""
    g = torch.Generator().manual_seed(seed)
    partitions = {r: [] for r in (order or range(world))}
    for shapes in groups:
        n = sum(math.prod(s) for s in shapes.values())
        flat = torch.randn(n, generator=g)
        flat = torch.cat([flat, flat.new_zeros(-n % (2 * world))])
        for r, part in enumerate(flat.chunk(world)):
            partitions[r].append(part.clone())
    return partitions, [{k: torch.Size(s) for k, s in shapes.items()} for shapes in groups]


_LAYER = {"0.weight": (4, 3), "0.bias": (4,), "2.weight": (2, 4), "2.bias": (2,)}


def _merge_cases():
    return [
        Case("one group on two ranks (as in the notebook)", lambda: _zero([_LAYER], 2)),
        Case(
            "ranks listed out of order {1: ..., 0: ..., 2: ...}",
            lambda: _zero([_LAYER], 3, order=[1, 0, 2], seed=1),
        ),
        Case(
            "two parameter groups (weights, then biases and norms)",
            lambda: _zero(
                [{"a.weight": (3, 5), "b.weight": (2, 3)}, {"a.bias": (3,), "norm": (7,)}],
                2,
                seed=2,
            ),
        ),
        Case(
            "twelve ranks (rank 10 comes after rank 9)",
            lambda: _zero([{"w": (5, 6), "b": (5,)}], 12, order=list(range(12)), seed=3),
        ),
    ]


def _rank_major(partitions, param_shapes):
    vector = torch.cat([t for r in sorted(partitions) for t in partitions[r]])
    state_dict, offset = {}, 0
    for shapes in param_shapes:
        for name, shape in shapes.items():
            n = math.prod(shape)
            state_dict[name] = vector[offset : offset + n].reshape(shape)
            offset += n
    return state_dict


_MERGE_MISTAKES = [
    (
        lambda partitions, shapes: _merge(partitions, shapes, order=list),
        "the slices were joined in the order the dict lists the ranks: sort the ranks (`sorted(partitions)`) so rank 0 comes first",
    ),
    (
        lambda partitions, shapes: _merge(partitions, shapes, lambda p: sorted(p, key=str)),
        "ranks sorted as text put rank 10 before rank 2: sort them as numbers",
    ),
    (
        lambda partitions, shapes: _merge(partitions, shapes[:1]),
        "only the first parameter group was merged: do the same for every group in `param_shapes`, with that group's slice from every rank",
    ),
    (
        _rank_major,
        "all of rank 0's groups were joined before rank 1's: join group g's slices across the ranks first, one vector per group",
    ),
    (
        lambda partitions, shapes: {k: v.flatten() for k, v in _merge(partitions, shapes).items()},
        "the tensors are still flat: give each one its shape (`.reshape(shape)`)",
    ),
]


@exercise("merge_zero_partitions", notebook=NB)
def merge_zero_partitions(fn) -> str:
    """``fn(partitions, param_shapes)`` returns every parameter, merged in rank order."""
    behaves_like(fn, _merge, _merge_cases(), _MERGE_MISTAKES)
    return "each group's slices joined in rank order, cut by param_shapes, padding left out (tried on ranks out of order, two groups and twelve ranks)."
