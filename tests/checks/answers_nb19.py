"""Wrong and right answers for the checks in labs_utils/checks/nb19.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import math

import numpy as np
import torch


def _merge_by_split(partitions, param_shapes):  # right: torch.split by the sizes
    state_dict = {}
    for g, shapes in enumerate(param_shapes):
        vector = torch.cat([partitions[r][g] for r in sorted(partitions)])
        sizes = [math.prod(s) for s in shapes.values()]
        pieces = torch.split(vector, sizes + [len(vector) - sum(sizes)])
        for (name, shape), piece in zip(shapes.items(), pieces):
            state_dict[name] = piece.view(shape).clone()
    return state_dict


def _merge_without_clone(partitions, param_shapes):  # right: views are equal tensors too
    state_dict = {}
    for g, shapes in enumerate(param_shapes):
        vector = torch.cat([partitions[r][g] for r in range(len(partitions))])
        offset = 0
        for name, shape in shapes.items():
            n = int(np.prod(shape))
            state_dict[name] = vector[offset : offset + n].view(*shape)
            offset += n
    return state_dict


def _insertion_order(partitions, param_shapes):
    state_dict = {}
    for g, shapes in enumerate(param_shapes):
        vector, offset = torch.cat([parts[g] for parts in partitions.values()]), 0
        for name, shape in shapes.items():
            n = math.prod(shape)
            state_dict[name] = vector[offset : offset + n].reshape(shape)
            offset += n
    return state_dict


def _text_order(partitions, param_shapes):
    ranks = sorted(partitions, key=str)
    return _merge_by_split({i: partitions[r] for i, r in enumerate(ranks)}, param_shapes)


def _first_group_only(partitions, param_shapes):
    return _merge_by_split(partitions, param_shapes[:1])


def _rank_major(partitions, param_shapes):
    vector = torch.cat([t for r in sorted(partitions) for t in partitions[r]])
    state_dict, offset = {}, 0
    for shapes in param_shapes:
        for name, shape in shapes.items():
            n = math.prod(shape)
            state_dict[name] = vector[offset : offset + n].reshape(shape)
            offset += n
    return state_dict


def _flat(partitions, param_shapes):
    return {k: v.flatten() for k, v in _merge_by_split(partitions, param_shapes).items()}


WRONG = {
    "keras_dense_to_linear": [
        (
            lambda k, b: {
                "weight": torch.tensor(k, dtype=torch.float32),
                "bias": torch.tensor(b, dtype=torch.float32),
            },
            "kernel.T",
        ),
        (
            lambda k, b: {
                "weight": torch.from_numpy(k.reshape(k.shape[1], -1)).float(),
                "bias": torch.from_numpy(b).float(),
            },
            "not a reshape",
        ),
        (lambda k, b: {"weight": k.T, "bias": b}, "NumPy arrays"),
        (
            lambda k, b: {
                "weight": torch.from_numpy(k.T.copy()),
                "bias": torch.from_numpy(b),
            },
            "float32",
        ),
        (
            lambda k, b: {"weight": torch.tensor(k.T, dtype=torch.float32), "bias": b},
            "bias is still a NumPy array",
        ),
    ],
    "merge_zero_partitions": [
        (_insertion_order, "sort the ranks"),
        (_text_order, "rank 10 before rank 2"),
        (_first_group_only, "every group"),
        (_rank_major, "across the ranks first"),
        (_flat, "still flat"),
    ],
}
RIGHT = {
    "keras_dense_to_linear": [
        lambda k, b: {
            "weight": torch.from_numpy(np.ascontiguousarray(k.T, dtype=np.float32)),
            "bias": torch.from_numpy(b.astype(np.float32)),
        },
        lambda kernel, bias: dict(
            weight=torch.as_tensor(kernel).float().t().contiguous(),
            bias=torch.as_tensor(bias).float().clone(),
        ),
    ],
    "merge_zero_partitions": [_merge_by_split, _merge_without_clone],
}
