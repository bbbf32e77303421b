"""Remove the key prefixes that PyTorch's wrappers add to a state_dict.

Wrapping a model changes the names in its ``state_dict``, because the wrapper holds the model
as a submodule:

* ``nn.DataParallel(model)`` and ``DistributedDataParallel(model)`` keep it as ``.module``, so
  ``fc1.weight`` becomes ``module.fc1.weight``;
* ``torch.compile(model)`` returns an ``OptimizedModule`` that keeps it as ``._orig_mod``, so
  ``fc1.weight`` becomes ``_orig_mod.fc1.weight``;
* wrappers nest: ``DDP(torch.compile(model))`` gives ``module._orig_mod.fc1.weight``.

``normalize_keys`` removes any run of these prefixes from the *start* of every key (and from
the state_dict's ``_metadata``, which ``load_state_dict`` reads for version information). A
key that merely contains ``module.`` further in (``encoder.module.weight``,
``submodule.bias``) is a real attribute path and is left alone. If two keys would end up with
the same name it raises instead of silently keeping one of them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from .inputs import as_state_dict, metadata_copy

__all__ = [
    "WRAPPER_PREFIXES",
    "normalize_keys",
    "strip_wrapper_prefixes",
    "detect_prefixes",
    "partial_prefixes",
]

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


def strip_wrapper_prefixes(key: str, prefixes: Iterable[str] = WRAPPER_PREFIXES) -> str:
    """``'module._orig_mod.fc1.weight'`` -> ``'fc1.weight'``: remove prefixes from the start of ``key``.

    Prefixes are removed repeatedly, in any order, as long as something is left after them.
    Text further in the key is never touched.

    Example::

        >>> from labs_utils.toolkit.prefixes import WRAPPER_PREFIXES, strip_wrapper_prefixes
        >>> WRAPPER_PREFIXES
        ('module.', '_orig_mod.')
        >>> strip_wrapper_prefixes("module._orig_mod.fc1.weight")  # DDP(torch.compile(m))
        'fc1.weight'
        >>> strip_wrapper_prefixes("encoder.module.weight")  # further in: a real submodule
        'encoder.module.weight'
        >>> strip_wrapper_prefixes("module.fc1.weight", prefixes=("_orig_mod.",))
        'module.fc1.weight'
    """
    if not isinstance(key, str):
        raise TypeError(
            f"state_dict keys are strings such as 'fc1.weight', got {type(key).__name__}: {key!r}"
        )
    prefixes = _check_prefixes(prefixes)
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if key.startswith(p) and len(key) > len(p):
                key = key[len(p) :]
                changed = True
    return key


def detect_prefixes(keys: Iterable[str]) -> list[str]:
    """Wrapper prefixes every key carries, outermost first: ``['module.', '_orig_mod.']``.

    Example::

        >>> from labs_utils.toolkit.prefixes import detect_prefixes
        >>> detect_prefixes(["module._orig_mod.fc.weight", "module._orig_mod.fc.bias"])
        ['module.', '_orig_mod.']
        >>> detect_prefixes(["module.weight", "fc.weight"])  # not every key: a real submodule
        []
    """
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


def _strip_metadata_key(name: str, prefixes: tuple[str, ...]) -> str:
    # metadata keys are module paths without the trailing dot: "", "module", "module.fc1", ...
    # ("module" is the wrapper's own entry and becomes "", the root)
    return strip_wrapper_prefixes(name + ".x", prefixes)[:-2]


def _strip_towards(key: str, prefixes: tuple[str, ...], target: set[str]) -> str:
    """Strip one prefix at a time, stopping as soon as the key is one of ``target``."""
    while key not in target:
        for p in prefixes:
            if key.startswith(p) and len(key) > len(p):
                key = key[len(p) :]
                break
        else:
            break
    return key


def normalize_keys(
    state_dict: Any, prefixes: Iterable[str] = WRAPPER_PREFIXES, *, like: Any = None
) -> OrderedDict[str, Any]:
    """Return a copy of ``state_dict`` with wrapper prefixes removed from the start of every key.

    ``state_dict`` may be a mapping of names to tensors, a model, or the path of a saved
    state_dict. The values are the same tensor objects (nothing is copied). Keys without a
    prefix are kept as they are, so a state_dict that was never wrapped comes back unchanged.

    Keys alone cannot tell a wrapper from a submodule that is really named ``module``:
    ``module.module.weight`` may be ``DataParallel(DataParallel(m))`` or ``DataParallel(m)``
    where ``m.module`` is a layer. Pass ``like=`` (the target model or its state_dict) and
    stripping stops as soon as a key matches one of the target's keys.

    Raises ``ValueError`` when two keys would become one (for example ``module.fc1.weight``
    and ``fc1.weight`` in the same state_dict), naming both keys, instead of silently keeping
    one of the two tensors.

    Example::

        >>> import torch
        >>> from labs_utils.toolkit import normalize_keys
        >>> model = torch.nn.Linear(2, 2)
        >>> saved = {"module." + k: v for k, v in model.state_dict().items()}  # from DDP
        >>> list(saved)
        ['module.weight', 'module.bias']
        >>> model.load_state_dict(normalize_keys(saved))
        <All keys matched successfully>

    A model whose own submodule is called ``module`` needs ``like=``:

        >>> net = torch.nn.Module()
        >>> net.module = torch.nn.Linear(2, 2)
        >>> saved = {"module." + k: v for k, v in net.state_dict().items()}  # DDP(net)
        >>> list(normalize_keys(saved))  # the keys alone: both look like wrappers
        ['weight', 'bias']
        >>> list(normalize_keys(saved, like=net))
        ['module.weight', 'module.bias']
        >>> normalize_keys({"module.bias": torch.zeros(2), "bias": torch.ones(2)})
        Traceback (most recent call last):
        ...
        ValueError: normalize_keys would map both 'module.bias' and 'bias' to 'bias': ...
    """
    prefixes = _check_prefixes(prefixes)
    sd, _ = as_state_dict(state_dict)
    target = set(as_state_dict(like, what="like= state_dict")[0]) if like is not None else None
    out: OrderedDict[str, Any] = OrderedDict()
    origin: dict[str, str] = {}
    for key, value in sd.items():
        if not isinstance(key, str):
            raise TypeError(
                f"state_dict keys are strings such as 'fc1.weight', got {type(key).__name__}: {key!r}"
            )
        new = (
            strip_wrapper_prefixes(key, prefixes)
            if target is None
            else _strip_towards(key, prefixes, target)
        )
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
            new_name = _strip_metadata_key(name, prefixes) if isinstance(name, str) else name
            # the wrapped module's own entry wins over the wrapper's (both map to "")
            if new_name not in new_meta or name != new_name:
                new_meta[new_name] = info
        out._metadata = new_meta  # type: ignore[attr-defined]
    return out
