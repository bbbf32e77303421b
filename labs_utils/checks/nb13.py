"""Checks for notebooks/13_export_without_the_class.ipynb: the model's class lives in a module that
does not exist (``_nb13_gone``), so the file must work without it; programs are compared with the
model in eval mode at several batch sizes, and ``Gated`` decides once per batch, not per row."""

from __future__ import annotations

import contextlib
import copy
import io
import re
import tempfile
import zipfile
from pathlib import Path
from unittest import mock

import torch
import torch.nn as nn

from . import Wrong, call_answer, exercise, explained, run_answer

NB = "13_export_without_the_class"
_GONE = "_nb13_gone"  # the module the check model's class claims to live in: it does not exist


class _ServingNet(nn.Module):
    """Conv-BatchNorm-ReLU-pool (12 -> 4), then Dropout and a Linear head, for (N, 3, 12, 12).
    Not a Sequential: answers export it with ``dynamic_shapes={"x": ...}``."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(3)
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(6 * 4 * 4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


_ServingNet.__module__ = _GONE  # pickling it, or importing it in another process, fails


def _serving_net(seed: int = 13) -> _ServingNet:
    """In training mode, as a freshly built model is, with trained-looking BatchNorm statistics."""
    torch.manual_seed(seed)
    model = _ServingNet()
    with torch.no_grad():
        bn = model.body[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return model.train()


def _archive_kind(path: Path) -> str:
    """'pt2', 'torchscript', 'torch.save' (a pickle, or another zip) or 'not a zip'."""
    if not zipfile.is_zipfile(path):
        return "not a zip"
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if any(n.endswith("models/model.json") for n in names):
        return "pt2"
    return "torchscript" if any("/code/" in n for n in names) else "torch.save"


_ONNX = "torch.onnx.export writes an ONNX model (for ONNX Runtime), not a .pt2 archive"
_KIND_HINTS = {
    "not a zip": "the file is not a .pt2 archive (an ONNX file, or raw bytes?): this exercise ships the program with torch.export.save, which writes a zip archive",
    "torchscript": "that is a TorchScript archive (torch.jit.save), deprecated in PyTorch 2.13: export with torch.export.export and save with torch.export.save",
    "torch.save": "that is a torch.save file (a pickle of weights or of the model): the server would still need the class; export with torch.export.export and save the program with torch.export.save",
    _ONNX: f"{_ONNX}: this exercise ships the program with torch.export.save, which writes the archive torch.export.load reads",
    _GONE: "torch.save(model) pickles the model's class by name, and a serving process that cannot import that class cannot load it; export the forward pass with torch.export.export and save it with torch.export.save",
}


def _refuse_onnx(*args, **kwargs):
    raise RuntimeError(_ONNX)  # at once: an ONNX file is never the .pt2 asked for, and takes 1 s


def _import_export_machinery() -> None:
    """Import torch.export's machinery before the learner's code runs: torch._dynamo adds PyTorch's
    own classes to the safe-globals list, which the framework would otherwise blame on the answer."""
    import torch._dynamo  # noqa: F401
    import torch._export.serde.serialize  # noqa: F401


@exercise("export_for_serving", notebook=NB)
def export_for_serving(fn) -> str:
    """``fn(model, example, path)`` writes a ``.pt2`` that serves any batch size, equal to eval-mode eager."""
    _import_export_machinery()
    model = _serving_net()
    reference = copy.deepcopy(model).eval()
    example = torch.randn(2, 3, 12, 12)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "served.pt2"
        with (
            mock.patch.object(torch.onnx, "export", _refuse_onnx),
            explained(re.escape(_ONNX), _KIND_HINTS[_ONNX]),
            explained(f"(?is)^(?=.*{_GONE})(?=.*pickle)", _KIND_HINTS[_GONE]),  # torch.save(model)
        ):
            run_answer(fn, model, example, path)
        if not path.is_file():
            raise Wrong(
                "nothing was written at `path`: after torch.export.export, save the program with torch.export.save(program, path)"
            )
        kind = _archive_kind(path)
        if kind != "pt2":
            raise Wrong(_KIND_HINTS[kind])
        program = torch.export.load(path)
    served = program.module()
    for n in (1, 2, 7, 1000):
        x = torch.randn(n, 3, 12, 12)
        try:
            with torch.no_grad():
                out = served(x)
        except Exception as e:  # noqa: BLE001  (a guard of the program refused the input)
            message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if "== 2" in message:
                raise Wrong(
                    f"the program refuses a batch of {n} ({message}): it was exported for the example's batch of 2 only; pass dynamic_shapes={{'x': {{0: Dim('batch')}}}} to torch.export.export"
                ) from None
            if "<=" in message:
                raise Wrong(
                    f"the program refuses a batch of {n} ({message}): the batch dimension has a max below 1000; leave max out of Dim('batch')"
                ) from None
            raise Wrong(f"the program refuses a batch of {n}: {message}") from None
        with torch.no_grad():
            expected = reference(x)
        if out.shape != expected.shape or not torch.equal(out, expected):
            raise Wrong(
                f"at a batch of {n} the program's outputs differ from the model in eval mode: it was exported in training mode (Dropout active, BatchNorm on batch statistics); call model.eval() before torch.export.export"
            )
    return "a .pt2 that runs any batch size without the model's class, equal to eager in eval mode."


class _Gated(nn.Module):
    """The notebook's ``Gated`` with other sizes: ``hot`` when the batch mean is positive, else ``cold``."""

    def __init__(self, features: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.cold = nn.Linear(features, classes)
        self.hot = nn.Linear(features, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hot(x) if x.mean() > 0 else self.cold(x)


def _gated_batches(rows: int, features: int) -> dict[str, torch.Tensor]:
    """Batches whose mean is positive or negative, two of them with rows of the other sign."""
    g = torch.Generator().manual_seed(5)
    magnitude = torch.rand(rows, features, generator=g) + 0.1
    mixed = magnitude.clone()
    mixed[:2] = -0.2 * mixed[:2]  # two rows negative, the batch mean still positive
    return {
        "a batch with a positive mean": magnitude,
        "a batch with a negative mean": -magnitude,
        "a batch with a positive mean and two negative rows": mixed,
        "a batch with a negative mean and two positive rows": -mixed,
    }


@exercise("export_gated", notebook=NB)
def export_gated(fn) -> str:
    """``fn(model, example)`` returns an ExportedProgram that takes the branch the model takes."""
    _import_export_machinery()
    torch.manual_seed(31)
    gated = type("Gated", (_Gated,), {"forward": _Gated.forward})  # a class of this check's own
    model = gated(features=6, classes=3).eval()
    batches = _gated_batches(rows=5, features=6)
    example = batches["a batch with a positive mean"].clone()
    with (  # torch prints the partial graph of a failed export
        contextlib.redirect_stderr(io.StringIO()),
        explained(
            "data-dependent|DataDependent",
            "torch.export cannot record an `if` on a tensor's value (data-dependent control flow); put both branches in the graph: wrap the model in a module whose forward returns torch.cond(x.mean() > 0, model.hot, model.cold, (x,))",
        ),
    ):
        program = call_answer(fn, model, example)
    if gated.__dict__["forward"] is not _Gated.forward or "forward" in vars(model):
        raise Wrong(
            "your function changed the model's forward (type(model).forward = ... changes the class, every instance of it, for the rest of the kernel): leave the class as it is and wrap the model in a new module whose forward calls torch.cond"
        )
    if isinstance(program, torch.jit.ScriptModule):
        raise Wrong(
            "that is TorchScript: torch.jit.trace records only the branch the example took (and is deprecated); return the ExportedProgram of torch.export.export"
        )
    if not isinstance(program, torch.export.ExportedProgram):
        raise Wrong(
            f"return the ExportedProgram that torch.export.export gives, got {type(program).__name__} (not its .module())"
        )
    served = program.module()
    took: dict[str, str] = {}  # batch -> the branch the program's output equals
    for name, x in batches.items():
        try:
            with torch.no_grad():
                out = served(x)
        except Exception as e:  # noqa: BLE001
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            draft = " (draft_export records the branch the example took as an assertion, it does not export the other branch)"
            hint = draft if "assertion" in first.lower() else ""
            raise Wrong(
                f"the program fails on {name}: {first}{hint}; use torch.cond so that both branches are in the graph"
            ) from None
        with torch.no_grad():
            branches = {"hot": model.hot(x), "cold": model.cold(x)}
        alike = (
            b
            for b, y in branches.items()
            if out.shape == y.shape and torch.allclose(out, y, atol=1e-6)
        )
        took[name] = next(alike, "neither")
    wanted = {name: "hot" if bool(x.mean() > 0) else "cold" for name, x in batches.items()}
    if took == wanted:
        return "both branches are in the graph, and the program picks the one the model picks."
    if len(set(took.values())) == 1 and "neither" not in took.values():
        only = next(iter(took.values()))
        raise Wrong(
            f"the program gives `{only}` for every batch, also where the model takes the other branch: one branch is baked in; use torch.cond so that the choice happens when the program runs"
        )
    if all(took[n] not in (wanted[n], "neither") for n in took):
        raise Wrong(
            "the program takes `cold` where the model takes `hot` and the other way round: the branches are swapped (torch.cond(pred, true_fn, false_fn, ...) runs true_fn when pred is true)"
        )
    wrong = [n for n in took if took[n] != wanted[n]]
    if all("rows" in n for n in wrong):
        raise Wrong(
            f"on {wrong[0]} the program disagrees with the model, which takes the {wanted[wrong[0]]} branch for the whole batch (x.mean() over every element); decide once per batch, not per row"
        )
    raise Wrong(
        f"on {wrong[0]} the program's outputs are not those of the model's {wanted[wrong[0]]} branch"
    )
