"""``capture_rng_state()`` / ``restore_rng_state(state)``: the state of every random number
generator a training run draws from (numpy's ndarray state is stored as a tensor).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["capture_rng_state", "restore_rng_state"]


_NO_GENERATOR = (
    " (a DataLoader made without generator=... has loader.generator None: give it a "
    "torch.Generator so its shuffling can be saved)"
)


def _check_generators(
    generators: Mapping[str, torch.Generator] | None, where: str
) -> dict[str, torch.Generator]:
    if generators is None:
        return {}
    if not isinstance(generators, Mapping):
        raise TypeError(
            f"{where}: generators must be a dict of name -> torch.Generator, e.g. "
            f"{{'train_loader': train_loader.generator}}; got {type(generators).__name__}"
        )
    for name, g in generators.items():
        if not isinstance(name, str):
            raise TypeError(f"{where}: generator names must be strings, got {name!r}")
        if not isinstance(g, torch.Generator):
            hint = "" if g is not None else _NO_GENERATOR
            raise TypeError(
                f"{where}: generators[{name!r}] is {type(g).__name__}, not a torch.Generator{hint}"
            )
    return dict(generators)


def capture_rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """``python``, ``numpy`` (the legacy global generator), ``torch`` (CPU), ``cuda`` (one state per
    GPU, or ``None``) and ``generators``: each ``torch.Generator`` named in ``generators``, e.g.
    ``{"train_loader": train_loader.generator}``; in a form ``weights_only=True`` loading accepts.

    Example::

        >>> import io, torch
        >>> from labs_utils.toolkit import capture_rng_state
        >>> state = capture_rng_state({"train_loader": torch.Generator().manual_seed(0)})
        >>> buffer = io.BytesIO()
        >>> torch.save({"rng": state}, buffer)
        >>> _ = buffer.seek(0)
        >>> sorted(torch.load(buffer, weights_only=True)["rng"])  # safe loading accepts it
        ['cuda', 'generators', 'numpy', 'python', 'torch']
    """
    import numpy as np

    gens = _check_generators(generators, "capture_rng_state()")
    np_state = np.random.get_state(legacy=False)  # the global RandomState: always MT19937
    cuda = None
    if torch.cuda.is_available():
        cuda = [s.clone() for s in torch.cuda.get_rng_state_all()]
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": "MT19937",
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": cuda,
        "generators": {name: g.get_state() for name, g in gens.items()},
    }


def restore_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> list[str]:
    """Put back what ``capture_rng_state`` returned and the ``torch.Generator`` objects named in
    ``generators``; returns the names restored (CUDA only on a machine with as many GPUs).

    Example::

        >>> import random, torch
        >>> from labs_utils.toolkit import capture_rng_state, restore_rng_state
        >>> loader_generator = torch.Generator().manual_seed(0)
        >>> state = capture_rng_state({"train_loader": loader_generator})
        >>> first = random.random(), torch.randperm(5, generator=loader_generator)
        >>> restored = restore_rng_state(state, {"train_loader": loader_generator})
        >>> restored[:3], restored[-1]  # and "cuda" on a machine with CUDA
        (['python', 'numpy', 'torch'], 'train_loader')
        >>> again = random.random(), torch.randperm(5, generator=loader_generator)
        >>> first[0] == again[0], torch.equal(first[1], again[1])
        (True, True)
    """
    import numpy as np

    if not isinstance(state, Mapping):
        raise TypeError(
            f"restore_rng_state() needs the dict from capture_rng_state(), got {type(state).__name__}"
        )
    missing = [k for k in ("python", "numpy", "torch") if k not in state]
    if missing:
        raise ValueError(
            f"restore_rng_state(): not an RNG state from capture_rng_state() (missing {missing}; "
            f"it has {sorted(map(str, state))[:8]}); pass checkpoint['rng'], not the whole checkpoint"
        )
    gens = _check_generators(generators, "restore_rng_state()")
    saved_gens = state.get("generators") or {}
    unknown = [n for n in gens if n not in saved_gens]
    if unknown:
        raise ValueError(
            f"restore_rng_state(): no saved state for generator(s) {unknown}; the checkpoint has "
            f"{sorted(saved_gens)}: use the names given to capture_rng_state(generators=...)"
        )
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) != torch.cuda.device_count():
        raise ValueError(
            f"restore_rng_state(): the state holds {len(cuda)} CUDA generator(s) but this machine has "
            f"{torch.cuda.device_count()} GPU(s); restore on the same number of GPUs, or drop them "
            "with {**state, 'cuda': None}"
        )
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    key = n["key"].cpu().numpy() if isinstance(n["key"], torch.Tensor) else np.asarray(n["key"])
    key = key.astype(np.uint32)
    np.random.set_state(
        (n["bit_generator"], key, int(n["pos"]), int(n["has_gauss"]), float(n["gauss"]))
    )
    torch.set_rng_state(state["torch"].cpu())
    restored = ["python", "numpy", "torch"]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        restored.append("cuda")
    for name, g in gens.items():
        g.set_state(saved_gens[name].cpu())
    return restored + list(gens)
