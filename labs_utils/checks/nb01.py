"""Checks for notebooks/01_state_dict_basics.ipynb."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from . import Wrong, call_answer, exercise, spy

NB = "01_state_dict_basics"


def _small_cnn_buffer_keys() -> set[str]:
    from ..models import SmallCNN

    model = SmallCNN()
    return set(model.state_dict()) - {n for n, _ in model.named_parameters()}


@exercise("buffers_in_state_dict", notebook=NB, wrong=[
    ({"features.1.running_mean", "features.1.running_var", "features.5.running_mean", "features.5.running_var"},
     "num_batches_tracked"),
    (_small_cnn_buffer_keys() | {"input_scale"}, "non-persistent"),
    ({"features.1.weight"}, "parameter"),
    (["features.1.running_mean"], "set"),
])
def buffers_in_state_dict(answer) -> str:
    """``answer``: the set of SmallCNN state_dict keys that are buffers, not parameters."""
    if not isinstance(answer, (set, frozenset)):
        raise Wrong(f"give a set of key strings, e.g. {{'features.1.running_mean', ...}}; got {type(answer).__name__}")
    expected = _small_cnn_buffer_keys()
    if "input_scale" in answer:
        raise Wrong("input_scale is a non-persistent buffer: it lives on the module but is not in the state_dict")
    from ..models import SmallCNN

    params = {n for n, _ in SmallCNN().named_parameters()}
    if answer & params:
        raise Wrong(f"{sorted(answer & params)[0]} is a parameter (it has requires_grad and the optimizer updates it)")
    missing = expected - answer
    if missing and all(k.endswith("num_batches_tracked") for k in missing):
        raise Wrong("BatchNorm keeps a third buffer besides running_mean and running_var: num_batches_tracked")
    if missing:
        raise Wrong(f"{len(missing)} buffer key(s) missing, e.g. {sorted(missing)[0]}; compare "
                    "model.state_dict() keys with named_parameters()")
    extra = answer - expected
    if extra:
        raise Wrong(f"{sorted(extra)[0]} is not a key of SmallCNN().state_dict()")
    return f"the {len(expected)} buffers are BatchNorm's running statistics and counters."


def _save_whole_model(model, path):
    torch.save(model, path)
    fresh = type(model)()
    fresh.load_state_dict(model.state_dict())
    return fresh


def _returns_same(model, path):
    torch.save(model.state_dict(), path)
    return model


def _no_load(model, path):
    torch.save(model.state_dict(), path)
    return type(model)()


def _deep_copy(model, path):
    import copy

    torch.save(model.state_dict(), path)
    return copy.deepcopy(model)


@exercise("save_and_reload", notebook=NB, wrong=[
    (_save_whole_model, "whole model"),
    (_deep_copy, "from the file"),
    (_returns_same, "same object"),
    (_no_load, "from the file"),
])
def save_and_reload(fn) -> str:
    """``fn(model, path)`` saves ``model``'s state_dict to ``path`` and returns a fresh, loaded copy."""
    from ..models import SimpleModel

    torch.manual_seed(123)
    model = SimpleModel()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pth"
        with spy(torch, "load") as loads:
            fresh = call_answer(fn, model, path)
        if fresh is model:
            raise Wrong("you returned the same object you were given; build a new instance with type(model)() "
                        "and load the state_dict into it")
        if not path.exists():
            raise Wrong("nothing was written to path; call torch.save(model.state_dict(), path)")
        try:
            saved = torch.load(path, weights_only=True)
        except Exception:
            raise Wrong("the file holds a whole model object, not a state_dict; save model.state_dict()") from None
        if not isinstance(saved, dict) or set(saved) != set(model.state_dict()):
            raise Wrong("the file should hold exactly model.state_dict()")
        if not loads:
            raise Wrong("the new model must get its weights from the file: load it with torch.load(path) "
                        "(copying the model in memory proves nothing about the file)")
    if not isinstance(fresh, torch.nn.Module):
        raise Wrong(f"return the new model, got {type(fresh).__name__}")
    for k, v in model.state_dict().items():
        if not torch.equal(v, fresh.state_dict()[k]):
            raise Wrong(f"the returned model's {k} differ from the original: did you call load_state_dict?")
    return "a fresh model with identical tensors, from a file that holds only the state_dict."
