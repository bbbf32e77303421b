"""Checks for notebooks/10_inference_loading.ipynb: the returned model is run, and grad mode and
BatchNorm statistics are watched during its forward pass."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from . import Wrong, call_answer, crash, exercise, explained
from .fixtures import changed_keys, cnn_with_moved_statistics, scratch_file, snapshot

NB = "10_inference_loading"


def _served_model_hint(model: Any, reference: nn.Module, seen: crash.WriteTrace) -> str | None:
    """What keeps the model an answer loaded from serving like ``reference``, if anything."""
    from ..models import SmallCNN

    if not isinstance(model, SmallCNN):
        return f"return the SmallCNN you loaded, got {type(model).__name__}"
    state = model.state_dict()
    loads = seen.arguments.get(torch.nn.Module.load_state_dict, [])
    for k, v in reference.state_dict().items():
        if state[k].is_meta:
            return f"the returned model's {k} is on the meta device: it has a shape but no values"
        if torch.equal(v, state[k].cpu()):
            continue
        if all(torch.equal(state[n].cpu(), p) for n, p in reference.named_parameters()):
            return f"the parameters were loaded, but {k} (a BatchNorm buffer) was not: load the whole 'model' entry with load_state_dict, which covers parameters and buffers"
        why = "load checkpoint['model'] (from the file at `path`) into the model you return"
        if any(a.get("strict") is False for a in loads):
            why = "load_state_dict(..., strict=False) matched none of the keys you gave it and loaded nothing, without a word; pass it checkpoint['model'], strictly"
        elif not loads:
            why = "and load_state_dict was never called: load checkpoint['model'] into the model you return"
        return f"the returned model's {k} differ from the checkpoint's{',' if not loads else ':'} {why}"
    if any(m.training for m in model.modules()):
        still = sorted(n or "the model itself" for n, m in model.named_modules() if m.training)
        return f"the model is still in training mode ({still[0]}; Dropout and BatchNorm behave as in training); call model.eval() on the whole model before returning it"
    if any(t.device.type != "cpu" for t in state.values()):
        return "the weights should be on the CPU: pass map_location='cpu' to torch.load"
    meta = [n for n, b in model.named_buffers() if b.is_meta]
    if meta:
        return f"the model cannot serve: its non-persistent buffer {meta[0]} is still on the meta device (assign=True only fills what the state_dict holds); set it by hand after loading, e.g. model.input_scale = torch.tensor(1.0), or build the model on the CPU"
    try:
        with torch.no_grad():
            model(torch.zeros(2, 1, 16, 16))
    except Exception as e:  # the learner's model, not the check, failed
        return f"the returned model cannot run a forward pass ({type(e).__name__}: {e})"
    if any(
        a.get("weights_only") is False for a in seen.arguments.get(torch.serialization.load, [])
    ):
        return "the model is right, but you loaded the checkpoint with weights_only=False: this file holds only tensors and plain values, so weights_only=True loads it, and never runs code hidden in a file (notebook 08)"
    return None


@exercise("load_for_inference", notebook=NB)
def load_for_inference(fn) -> str:
    """``fn(path)`` returns a SmallCNN loaded from the ``model`` entry of a training checkpoint, in eval mode."""
    reference = cnn_with_moved_statistics(10)  # as if trained: BatchNorm statistics moved
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-3)
    checkpoint = {"model": reference.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3}
    with scratch_file("last.pth") as path:
        torch.save({**checkpoint, "metrics": {"val_loss": 0.25, "val_acc": 0.9}}, path)
        watch = crash.watching(torch.serialization.load, torch.nn.Module.load_state_dict)
        with (
            watch as seen,
            explained(
                "Missing key|Unexpected key",
                "load_state_dict got the whole training checkpoint; pass it only the 'model' entry: checkpoint['model']",
            ),
        ):
            model = call_answer(fn, path)
    if hint := _served_model_hint(model, reference, seen):
        raise Wrong(hint)
    return "the 'model' entry only, in eval mode: ready to serve."


def _prediction_hint(
    model: nn.Module, saved: dict, first: Any, grad_modes: list, images: torch.Tensor
) -> str | None:
    """What is wrong with the answer's first prediction, or with what it did to the model."""
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    if frozen:
        return f"after predict, {frozen[0]} has requires_grad=False: model.requires_grad_(False) freezes the model for every later use, so training code after predict gets no gradients; leave the parameters alone and run the forward pass inside torch.no_grad() or torch.inference_mode(), which change nothing on the model"
    changed = changed_keys(model, saved)
    if changed:
        return f"{changed[0]} changed during prediction: in training mode BatchNorm updates its running statistics on every forward pass; call model.eval() first"
    if not isinstance(first, torch.Tensor):
        return f"return a tensor of class indices, got {type(first).__name__}"
    if any(grad_modes):
        return "the forward pass ran with autograd on, recording a graph you never use (argmax hides it: its result never requires grad); wrap it in torch.inference_mode() or torch.no_grad()"
    if first.requires_grad or first.grad_fn is not None:
        return "the result is tracked by autograd (requires_grad=True); run the forward pass inside torch.inference_mode() or torch.no_grad()"
    if first.dim() != 1 or first.shape[0] != len(images):
        return f"expected one class per image, shape ({len(images)},), got {tuple(first.shape)}: take argmax over dim=1 of the logits"
    if first.is_floating_point():
        return "return integer class indices (argmax), not floats"
    return None


@exercise("predict_no_trace", notebook=NB)
def predict_no_trace(fn) -> str:
    """``fn(model, images)`` returns class indices, with no graph, no BatchNorm update, deterministically."""
    model = cnn_with_moved_statistics(11)  # in training mode, as a freshly loaded model is
    saved = snapshot(model)
    torch.manual_seed(0)
    images = torch.randn(16, 1, 16, 16)
    grad_modes: list[bool] = []
    hook = model.register_forward_hook(
        lambda module, args, out: grad_modes.append(torch.is_grad_enabled())
    )
    try:
        with explained(
            "context manager protocol",
            "`with torch.no_grad:` (or torch.inference_mode) without parentheses hands `with` the class itself, which is not a context manager: write `with torch.no_grad():` ({error})",
        ):
            first = call_answer(fn, model, images)
    finally:
        hook.remove()
    if hint := _prediction_hint(model, saved, first, grad_modes, images):
        raise Wrong(hint)
    second = call_answer(fn, model, images)
    if not torch.equal(first, second):
        raise Wrong(
            "two calls on the same images gave different classes: Dropout is active in training mode (on a copy of the model too); call model.eval()"
        )
    reference = cnn_with_moved_statistics(11).eval()
    with torch.no_grad():
        expected = reference(images).argmax(dim=1)
    if not torch.equal(first.cpu().long(), expected):
        raise Wrong(
            "the classes differ from the eval-mode predictions; use model.eval() and argmax(dim=1)"
        )
    return "eval mode, no autograd, the model untouched: the same answer every time."
