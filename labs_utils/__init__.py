"""Helper package for the PyTorch weights workbook: what the lessons need but do not teach, and
the toolkit they build up to. The PyTorch call a lesson is about always stays in the notebook.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

__all__ = ["seed_everything", "scratch_dir", "data_file", "__version__"]
__version__ = "0.1.0"


def seed_everything(seed: int = 0) -> int:
    """Seed python, numpy and torch (CPU and every CUDA device) with ``seed``; returns it. Also turns
    cuDNN autotuning off and asks for deterministic algorithms (ops without one warn, not fail).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(
            f"seed_everything() expects an int seed, got {type(seed).__name__}: {seed!r}"
        )
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}; numpy cannot use it otherwise")
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    # cuBLAS needs this to be deterministic; harmless on CPU.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


def scratch_dir(name: str, root: str | os.PathLike = "runs") -> Path:
    """An empty folder ``runs/<name>`` (removed and made again, so a rerun starts the same), with a
    relative path, so outputs never show a machine's absolute paths.
    """
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(
            f"scratch_dir() needs a plain folder name such as '01_state_dict_basics', got {name!r}"
        )
    path = Path(root) / name
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def data_file(name: str) -> Path:
    """Path of a fixture in the repository's ``data/`` folder, wherever the notebook runs."""
    path = Path(__file__).resolve().parent.parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"data/{name}: no such fixture; see data/README.md for the files that "
            "exist and the scripts that remake them"
        )
    return path
