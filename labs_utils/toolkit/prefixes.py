"""The key prefixes PyTorch's wrappers add to a state_dict, and how to remove them.

``nn.DataParallel`` and ``DistributedDataParallel`` keep the model as ``.module``
(``module.fc1.weight``), ``torch.compile`` as ``._orig_mod`` (``_orig_mod.fc1.weight``), and
wrappers nest (``module._orig_mod.fc1.weight``). Only a run of prefixes at the *start* of a key
is a wrapper's; ``encoder.module.weight`` is a real attribute path.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Container, Iterable
from typing import Any

from .inputs import as_state_dict, metadata_copy

__all__ = ["WRAPPER_PREFIXES", "normalize_keys", "strip_wrapper_prefixes", "detect_prefixes"]
__all__ += ["partial_prefixes"]

#: Prefixes added by ``nn.DataParallel``/``DistributedDataParallel`` and by ``torch.compile``.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")


def _check_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(prefixes, str):
        raise TypeError(
            f"prefixes must be a list or tuple of strings such as ('module.',), got the string "
            f"{prefixes!r}; write prefixes=({prefixes!r},)"
        )
    out = tuple(prefixes)
    for p in out:
        if not isinstance(p, str) or not p:
            raise TypeError(f"each prefix must be a non-empty string such as 'module.', got {p!r}")
        if not p.endswith("."):
            raise ValueError(
                f"prefix {p!r} must end with '.', the separator between a wrapper and the "
                f"wrapped module's names: use {p + '.'!r}"
            )
    if not out:
        raise ValueError("prefixes is empty: give at least one, e.g. ('module.',)")
    return out


def strip_wrapper_prefixes(
    key: str, prefixes: Iterable[str] = WRAPPER_PREFIXES, *, stop_at: Container[str] = ()
) -> str:
    """``'module._orig_mod.fc1.weight'`` -> ``'fc1.weight'``: remove ``prefixes`` from the start of
    ``key``, one at a time and in any order, as long as something is left after them and the key
    is not yet one of ``stop_at``.
    """
    if not isinstance(key, str):
        raise TypeError(
            f"state_dict keys are strings such as 'fc1.weight', got {type(key).__name__}: {key!r}"
        )
    prefixes = _check_prefixes(prefixes)
    while key not in stop_at:
        p = next((p for p in prefixes if key.startswith(p) and len(key) > len(p)), None)
        if p is None:
            break
        key = key[len(p) :]
    return key


def detect_prefixes(keys: Iterable[str]) -> list[str]:
    """Wrapper prefixes every key carries, outermost first: ``['module.', '_orig_mod.']``."""
    found: list[str] = []
    keys = list(keys)
    while keys:
        p = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in keys)), None)
        if p is None:
            break
        found.append(p)
        keys = [k[len(p) :] for k in keys]
    return found


def partial_prefixes(keys: list[str]) -> dict[str, int]:
    """Wrapper-like prefixes that some, but not all, of ``keys`` carry: prefix -> how many. Such a
    prefix is the name of a real submodule (``model.module``), not a wrapper."""
    counts = {p: sum(k.startswith(p) for k in keys) for p in WRAPPER_PREFIXES}
    return {p: n for p, n in counts.items() if 0 < n < len(keys)}


def normalize_keys(
    state_dict: Any, prefixes: Iterable[str] = WRAPPER_PREFIXES, *, like: Any = None
) -> OrderedDict[str, Any]:
    """A copy of ``state_dict`` (a mapping, a model or a path) with wrapper prefixes removed from the
    start of every key and of its ``_metadata``; the values are the same tensors.

    Keys alone cannot tell a wrapper from a submodule really named ``module``: pass ``like=`` (the
    target model or its state_dict) and stripping stops as soon as a key is one of the target's.
    Two keys that would become one (``module.fc1.weight`` and ``fc1.weight``) raise ``ValueError``.

    Example::

        >>> import torch
        >>> from labs_utils.toolkit import normalize_keys
        >>> model = torch.nn.Linear(2, 2)
        >>> saved = {"module." + k: v for k, v in model.state_dict().items()}  # from DDP
        >>> model.load_state_dict(normalize_keys(saved))
        <All keys matched successfully>
        >>> net = torch.nn.Module()
        >>> net.module = torch.nn.Linear(2, 2)  # a submodule called "module"
        >>> saved = {"module." + k: v for k, v in net.state_dict().items()}  # DDP(net)
        >>> list(normalize_keys(saved)), list(normalize_keys(saved, like=net))
        (['weight', 'bias'], ['module.weight', 'module.bias'])
    """
    prefixes = _check_prefixes(prefixes)
    sd, _ = as_state_dict(state_dict)
    target = set(as_state_dict(like, what="like= state_dict")[0]) if like is not None else ()
    out: OrderedDict[str, Any] = OrderedDict()
    origin: dict[str, str] = {}
    for key, value in sd.items():
        new = strip_wrapper_prefixes(key, prefixes, stop_at=target)
        if new in out:
            raise ValueError(
                f"normalize_keys would map both {origin[new]!r} and {key!r} to {new!r}: the state_dict mixes "
                "wrapped and unwrapped copies of the same entry (for example it was merged from two saves). "
                "Decide which copy you want, drop the other key, then call normalize_keys again."
            )
        out[new] = value
        origin[new] = key
    metadata = metadata_copy(sd)  # a copy, without the flag an assign=True load leaves
    if metadata is not None:
        new_meta: OrderedDict[str, Any] = OrderedDict()
        for name, info in metadata.items():
            new_name = name
            if isinstance(name, str):  # a module path: "module" (the wrapper's own) becomes ""
                new_name = strip_wrapper_prefixes(name + ".x", prefixes)[:-2]
            # the wrapped module's own entry wins over the wrapper's (both map to "")
            if new_name not in new_meta or name != new_name:
                new_meta[new_name] = info
        out._metadata = new_meta  # type: ignore[attr-defined]
    return out
