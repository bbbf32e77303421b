"""Wrong and right answers for the checks in labs_utils/checks/nb09.py (test data):
WRONG pairs an answer with a piece of the hint it must get; RIGHT lists answers that pass."""

from __future__ import annotations

import torch
import torch.nn as nn


def _clone_all(model, path, epoch):
    from safetensors.torch import save_file

    save_file(
        {k: v.clone() for k, v in model.state_dict().items()},
        path,
        metadata={"epoch": str(epoch)},
    )
    return path


def _save_file_tied(model, path, epoch):
    from safetensors.torch import save_file

    save_file(model.state_dict(), path, metadata={"epoch": str(epoch)})
    return path


def _drops_head_by_name(model, path, epoch):
    from safetensors.torch import save_file

    save_file(
        {k: v for k, v in model.state_dict().items() if k != "head.weight"},
        path,
        metadata={"epoch": str(epoch)},
    )
    return path


def _no_metadata(model, path, epoch):
    from safetensors.torch import save_model

    save_model(model, path)
    return path


def _int_metadata(model, path, epoch):
    from safetensors.torch import save_model

    save_model(model, path, metadata={"epoch": epoch})
    return path


def _forgot_return(model, path, epoch):
    from safetensors.torch import save_model

    save_model(model, path, metadata={"epoch": str(epoch)})


def _torch_save(model, path, epoch):
    torch.save({"model": model.state_dict(), "epoch": epoch}, path)
    return path


def _unties_the_model(model, path, epoch):
    from safetensors.torch import save_file

    for module in model.modules():  # give every Linear its own copy of the weight
        if isinstance(module, nn.Linear):
            module.weight = nn.Parameter(module.weight.detach().clone())
    save_file(model.state_dict(), path, metadata={"epoch": str(epoch)})
    return path


def _capital_key(model, path, epoch):
    from safetensors.torch import save_model

    save_model(model, path, metadata={"Epoch": str(epoch)})
    return path


def _positional_metadata(model, path, epoch):
    from safetensors.torch import save_model

    save_model(model, str(path), {"epoch": f"{epoch}"})
    return path


def _dedup_by_hand(model, path, epoch):
    from safetensors.torch import save_file

    kept, seen = {}, set()
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            kept[name] = tensor.contiguous()
    save_file(kept, path, metadata={"epoch": str(epoch)})
    return path


def _uses_load_file(path, key):
    from safetensors.torch import load_file

    return load_file(path)[key]


def _returns_dict(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {key: f.get_tensor(key)}


def _wrong_key(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.get_tensor(sorted(f.keys())[-1])


def _reads_every_tensor(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}[key]


def _loops_until_found(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        for k in f.keys():
            tensor = f.get_tensor(k)
            if k == key:
                return tensor


def _substring_match(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        name = next(k for k in f.keys() if key in k)
        return f.get_tensor(name)


def _returns_the_slice(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        return f.get_slice(key)


def _numpy_framework(path, key):
    from safetensors import safe_open

    with safe_open(path, framework="np") as f:
        return f.get_tensor(key)


def _torch_load(path, key):
    return torch.load(path)[key]


def _without_with(path, key):
    from safetensors import safe_open

    return safe_open(str(path), framework="pt", device="cpu").get_tensor(key)


def _full_slice(path, key):
    import safetensors

    with safetensors.safe_open(path, "pt") as f:
        return f.get_slice(key)[:]


WRONG = {
    "save_with_epoch": [
        (_clone_all, "twice"),
        (_save_file_tied, "save_model"),
        (_drops_head_by_name, "save_model"),
        (_no_metadata, "metadata"),
        (_int_metadata, "strings"),
        (_forgot_return, "return path"),
        (_torch_save, "not a safetensors file"),
        (_unties_the_model, "changed the model"),
        (_capital_key, "'epoch'"),
    ],
    "read_one_tensor": [
        (_uses_load_file, "every tensor"),
        (_returns_dict, "just the tensor"),
        (_wrong_key, "whatever key"),
        (_reads_every_tensor, "read 5 tensors"),
        (_loops_until_found, "tensors"),
        (_substring_match, "exactly"),
        (_returns_the_slice, "[:]"),
        (_numpy_framework, 'framework="pt"'),
        (_torch_load, "every tensor"),
    ],
}
RIGHT = {
    "save_with_epoch": [_positional_metadata, _dedup_by_hand],
    "read_one_tensor": [_without_with, _full_slice],
}
