"""Checks for notebooks/10_inference_loading.ipynb."""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from . import Wrong, call_answer, exercise

NB = "10_inference_loading"


def _trained_like_cnn(seed: int = 10):
    """A SmallCNN with non-default weights and BatchNorm statistics (as if trained)."""
    from ..models import SmallCNN

    torch.manual_seed(seed)
    model = SmallCNN()
    with torch.no_grad():
        for bn in (model.features[1], model.features[5]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(7)
    return model


def _training_checkpoint(model) -> dict:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 3,
            "metrics": {"val_loss": 0.25, "val_acc": 0.9}}


def _no_eval(path):
    from ..models import SmallCNN

    model = SmallCNN()
    model.load_state_dict(torch.load(path, weights_only=True)["model"])
    return model


def _whole_dict(path):
    from ..models import SmallCNN

    model = SmallCNN()
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _not_loaded(path):
    from ..models import SmallCNN

    return SmallCNN().eval()


@exercise("load_for_inference", notebook=NB, wrong=[
    (_no_eval, "eval"),
    (_whole_dict, "'model' entry"),
    (_not_loaded, "differ"),
])
def load_for_inference(fn) -> str:
    """``fn(path)`` returns a SmallCNN loaded from the ``model`` entry of a training checkpoint, in eval mode."""
    from ..models import SmallCNN

    reference = _trained_like_cnn()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "last.pth"
        torch.save(_training_checkpoint(reference), path)
        try:
            model = call_answer(fn, path)
        except Wrong as w:
            if "Missing key" in str(w) or "Unexpected key" in str(w):
                raise Wrong("load_state_dict got the whole training checkpoint; pass it only the 'model' entry: "
                            "checkpoint['model']") from None
            raise
    if not isinstance(model, SmallCNN):
        raise Wrong(f"return the SmallCNN you loaded, got {type(model).__name__}")
    for k, v in reference.state_dict().items():
        if not torch.equal(v, model.state_dict()[k]):
            raise Wrong(f"the returned model's {k} differ from the checkpoint's: load checkpoint['model'] "
                        "into it with load_state_dict")
    if any(m.training for m in model.modules()):
        raise Wrong("the model is still in training mode (Dropout and BatchNorm behave as in training); "
                    "call model.eval() before returning it")
    if any(t.device.type != "cpu" for t in model.state_dict().values()):
        raise Wrong("the weights should be on the CPU: pass map_location='cpu' to torch.load")
    return "the 'model' entry only, in eval mode: ready to serve."


def _no_eval_predict(model, images):
    with torch.inference_mode():
        return model(images).argmax(dim=1)


def _logits(model, images):
    model.eval()
    with torch.inference_mode():
        return model(images)


def _with_grad(model, images):
    model.eval()
    return model(images).argmax(dim=1).float().requires_grad_()


def _argmax_with_graph(model, images):
    model.eval()
    return model(images).argmax(1)


@exercise("predict_no_trace", notebook=NB, wrong=[
    (_no_eval_predict, "eval"),
    (_logits, "argmax"),
    (_with_grad, "autograd"),
    (_argmax_with_graph, "autograd on"),
])
def predict_no_trace(fn) -> str:
    """``fn(model, images)`` returns class indices, with no graph, no BatchNorm update, deterministically."""
    model = _trained_like_cnn(11)
    model.train()  # as a freshly loaded model would be
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    images = torch.randn(16, 1, 16, 16)
    grad_modes: list[bool] = []
    hook = model.register_forward_hook(lambda module, args, out: grad_modes.append(torch.is_grad_enabled()))
    try:
        first = call_answer(fn, model, images)
    finally:
        hook.remove()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, saved[k])]
    if changed:
        raise Wrong(f"{changed[0]} changed during prediction: in training mode BatchNorm updates its running "
                    "statistics on every forward pass; call model.eval() first")
    if not isinstance(first, torch.Tensor):
        raise Wrong(f"return a tensor of class indices, got {type(first).__name__}")
    if any(grad_modes):
        raise Wrong("the forward pass ran with autograd on, recording a graph you never use (argmax hides "
                    "it: its result never requires grad); wrap it in torch.inference_mode() or torch.no_grad()")
    if first.requires_grad or first.grad_fn is not None:
        raise Wrong("the result is tracked by autograd (requires_grad=True); run the forward pass inside "
                    "torch.inference_mode() or torch.no_grad()")
    if first.dim() != 1 or first.shape[0] != len(images):
        raise Wrong(f"expected one class per image, shape ({len(images)},), got {tuple(first.shape)}: "
                    "take argmax over dim=1 of the logits")
    if first.is_floating_point():
        raise Wrong("return integer class indices (argmax), not floats")
    second = call_answer(fn, model, images)
    if not torch.equal(first, second):
        raise Wrong("two calls on the same images gave different classes: Dropout is active in training "
                    "mode; call model.eval()")
    reference = _trained_like_cnn(11).eval()
    with torch.no_grad():
        expected = reference(images).argmax(dim=1)
    if not torch.equal(first.cpu().long(), expected):
        raise Wrong("the classes differ from the eval-mode predictions; use model.eval() and argmax(dim=1)")
    return "eval mode, no autograd, the model untouched: the same answer every time."
