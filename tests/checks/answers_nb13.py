"""Wrong and right answers for the checks in labs_utils/checks/nb13.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

_BATCH = torch.export.Dim("batch")


def _static(model, example, path):
    torch.export.save(torch.export.export(model.eval(), (example,)), path)


def _train_mode(model, example, path):
    torch.export.save(
        torch.export.export(model, (example,), dynamic_shapes={"x": {0: _BATCH}}), path
    )


def _small_max(model, example, path):
    batch = torch.export.Dim("batch", max=64)
    torch.export.save(
        torch.export.export(model.eval(), (example,), dynamic_shapes={"x": {0: batch}}),
        path,
    )


def _state_dict_only(model, example, path):
    torch.save(model.eval().state_dict(), path)


def _whole_model(model, example, path):
    torch.save(model.eval(), path)


def _torchscript(model, example, path):
    torch.jit.save(torch.jit.trace(model.eval(), example), path)


def _not_saved(model, example, path):
    return torch.export.export(model.eval(), (example,), dynamic_shapes={"x": {0: _BATCH}})


def _onnx(model, example, path):
    torch.onnx.export(
        model.eval(),
        (example,),
        path,
        dynamo=True,
        external_data=False,
        dynamic_shapes={"x": {0: _BATCH}},
        verbose=False,
    )


def _auto(model, example, path):  # a right answer unlike the notebook's: Dim.AUTO, tuple form
    program = torch.export.export(
        model.eval(), (example,), dynamic_shapes=({0: torch.export.Dim.AUTO},)
    )
    with open(path, "wb") as f:
        torch.export.save(program, f)


def _copy_then_export(
    model, example, path
):  # another right answer: leaves the caller's model alone
    serving = copy.deepcopy(model).eval()
    batch = torch.export.Dim("n", min=1, max=4096)
    torch.export.save(
        torch.export.export(serving, (example,), dynamic_shapes={"x": {0: batch}}),
        str(path),
    )
    return path


class _Cond(nn.Module):
    def __init__(self, gated: nn.Module) -> None:
        super().__init__()
        self.gated = gated

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.mean() > 0, self.gated.hot, self.gated.cold, (x,))


class _WhereBatch(_Cond):  # a right answer unlike the notebook's: both branches, one picked
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.mean() > 0, self.gated.hot(x), self.gated.cold(x))


class _WherePerRow(_Cond):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        row_positive = x.mean(dim=1, keepdim=True) > 0
        return torch.where(row_positive, self.gated.hot(x), self.gated.cold(x))


class _HotOnly(_Cond):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gated.hot(x)


class _Swapped(_Cond):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cond(x.mean() > 0, self.gated.cold, self.gated.hot, (x,))


def _plain_export(model, example):
    return torch.export.export(model, (example,))


def _where_per_row(model, example):
    return torch.export.export(_WherePerRow(model), (example,))


def _baked_branch(model, example):
    return torch.export.export(_HotOnly(model), (example,))


def _traced(model, example):
    return torch.jit.trace(model, example)


def _returns_module(model, example):
    return torch.export.export(_Cond(model), (example,)).module()


def _swapped(model, example):
    return torch.export.export(_Swapped(model), (example,))


def _draft(model, example):
    return torch.export.draft_export(model, (example,))


def _where_batch(model, example):
    return torch.export.export(_WhereBatch(model), (example,))


WRONG = {
    "export_for_serving": [
        (_static, "dynamic_shapes"),
        (_train_mode, "eval"),
        (_small_max, "max"),
        (_state_dict_only, "torch.save"),
        (_whole_model, "class"),
        (_torchscript, "torchscript"),
        (_not_saved, "torch.export.save"),
        (_onnx, "onnx"),
    ],
    "export_gated": [
        (_plain_export, "torch.cond"),
        (_where_per_row, "whole batch"),
        (_baked_branch, "one branch"),
        (_traced, "torchscript"),
        (_returns_module, "ExportedProgram"),
        (_draft, "draft_export"),
        (_swapped, "swapped"),
    ],
}
RIGHT = {
    "export_for_serving": [_auto, _copy_then_export],
    "export_gated": [_where_batch],
}
