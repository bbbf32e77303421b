"""Helper package for the PyTorch weights workbook.

It carries what the lessons need but do not teach (tiny models, data, training loops,
plots, process workers, self-checks) and the production-grade utilities the lessons build
up to (state-dict tools, checkpoints). The PyTorch call a lesson is about always stays in
the notebook.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

__all__ = ["seed_everything", "scratch_dir", "data_file", "__version__"]
__version__ = "0.1.0"


def seed_everything(seed: int = 0, *, deterministic: bool = True) -> int:
    """Seed python, numpy and torch (CPU and every CUDA device) with ``seed``.

    With ``deterministic=True`` it also asks PyTorch for deterministic algorithms where that
    is cheap: cuDNN autotuning off, deterministic cuDNN kernels, and
    ``torch.use_deterministic_algorithms(True, warn_only=True)`` (ops without a deterministic
    implementation warn instead of failing). Returns the seed.
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
    if deterministic:
        # cuBLAS needs this to be deterministic; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


def scratch_dir(name: str, root: str | os.PathLike = "runs") -> Path:
    """Return an empty folder ``runs/<name>`` for the files a notebook writes.

    The folder is removed and made again, so a rerun starts from the same state. The path is
    relative (to the notebook's folder), so outputs never show a machine's absolute paths.
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
    """Path of a fixture shipped in the repository's ``data/`` folder (see data/README.md).

    It does not depend on the current folder, so a notebook finds its fixtures wherever it runs
    (the workbook, or a learner edition built elsewhere).
    """
    path = Path(__file__).resolve().parent.parent / "data" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"data/{name}: no such fixture; see data/README.md for the files that "
            "exist and the scripts that remake them"
        )
    return path
