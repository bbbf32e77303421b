"""Wrong and right answers for the checks in labs_utils/checks/nb01.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import copy

import torch


def _all_named_buffers(model):
    return {name for name, _ in model.named_buffers()}


def _by_suffix(model):
    return {k for k in model.state_dict() if not k.endswith((".weight", ".bias"))}


def _batchnorm_words(model):
    return {k for k in model.state_dict() if "running" in k or "num_batches" in k}


def _the_notebooks_cnn(model):
    from labs_utils.models import SmallCNN

    probe = SmallCNN()
    return set(probe.state_dict()) - {n for n, _ in probe.named_parameters()}


def _buffer_tensors(model):
    return set(model.buffers())


def _as_list(model):
    return [k for k in model.state_dict() if k not in dict(model.named_parameters())]


def _right_keys_view(model):
    return model.state_dict().keys() - dict(model.named_parameters()).keys()


def _right_persistent_buffers(model):
    return frozenset(name for name, _ in model.named_buffers() if name in model.state_dict())


def _save_whole_model(model, path):
    torch.save(model, path)
    fresh = type(model)()
    fresh.load_state_dict(model.state_dict())
    return fresh


def _returns_same(model, path):
    torch.save(model.state_dict(), path)
    return model


def _deep_copy(model, path):
    torch.save(model.state_dict(), path)
    return copy.deepcopy(model)


def _load_unused(model, path):
    torch.save(model.state_dict(), path)
    fresh = type(model)()
    torch.load(path)  # read, then not used
    fresh.load_state_dict(model.state_dict())
    return fresh


def _hard_coded_class(model, path):
    from labs_utils.models import SimpleModel

    torch.save(model.state_dict(), path)
    fresh = SimpleModel()
    fresh.load_state_dict(torch.load(path))
    return fresh


def _params_only(model, path):
    torch.save(dict(model.named_parameters()), path)
    fresh = type(model)()
    fresh.load_state_dict(torch.load(path), strict=False)
    return fresh


def _wrapped(model, path):
    torch.save({"model": model.state_dict()}, path)
    fresh = type(model)()
    fresh.load_state_dict(torch.load(path)["model"])
    return fresh


def _returns_load_result(model, path):
    torch.save(model.state_dict(), path)
    return type(model)().load_state_dict(torch.load(path))


def _forgot_return(model, path):
    torch.save(model.state_dict(), path)
    fresh = type(model)()
    fresh.load_state_dict(torch.load(path))


def _right_file_objects(model, path):
    with open(path, "wb") as f:
        torch.save(model.state_dict(), f)
    fresh = model.__class__()
    with open(path, "rb") as f:
        fresh.load_state_dict(torch.load(f, map_location=torch.device("cpu"), weights_only=True))
    return fresh.eval()


def _right_assign(model, path):
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, str(path))
    fresh = type(model)()
    fresh.load_state_dict(torch.load(str(path), mmap=True), assign=True)
    return fresh


def _never_saved(model, path):
    fresh = type(model)()
    fresh.load_state_dict(model.state_dict())
    return fresh


def _saves_a_fresh_model(model, path):
    torch.save(type(model)().state_dict(), path)
    fresh = type(model)()
    fresh.load_state_dict(torch.load(path))
    return fresh


WRONG = {
    "buffers_in_state_dict": [
        (_all_named_buffers, "non-persistent"),
        (_by_suffix, "gain"),
        (_batchnorm_words, "not only BatchNorm"),
        (_the_notebooks_cnn, "model you are given"),
        (_buffer_tensors, "tensors"),
        (_as_list, "set"),
    ],
    "save_and_reload": [
        (_save_whole_model, "whole model"),
        (_deep_copy, "from the file"),
        (_returns_same, "same object"),
        (_load_unused, "did not come from the file"),
        (_hard_coded_class, "same class"),
        (_params_only, "buffers"),
        (_wrapped, "exactly model.state_dict()"),
        (_returns_load_result, "_IncompatibleKeys"),
        (_forgot_return, "forget the `return`"),
        (_never_saved, "nothing was written to path"),
        (_saves_a_fresh_model, "its keys or values differ"),
    ],
}
RIGHT = {
    "buffers_in_state_dict": [],
    "save_and_reload": [_right_file_objects, _right_assign],
}
