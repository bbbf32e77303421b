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
        raise ValueError(
            f"seed must be in [0, 2**32), got {seed}; numpy cannot use it otherwise"
        )
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
    if (
        not isinstance(name, str)
        or not name
        or "/" in name
        or "\\" in name
        or name in {".", ".."}
    ):
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


# Scripts written against the flat layout of earlier versions (labs_utils.checkpoints,
# labs_utils.state_dicts, ...) keep working: the old names resolve, with a DeprecationWarning, to
# where the code lives now. The notebooks and tests use the new names (tests/test_package_layout.py).
_MOVED = {
    "checkpoints": "labs_utils.toolkit",
    "state_dicts": "labs_utils.toolkit",
    "prefixes": "labs_utils.toolkit",
    "inspector": "labs_utils.toolkit",
    "convert": "labs_utils.toolkit",
    "_render": "labs_utils.toolkit.render",
    "distributed": "labs_utils.workers.distributed",
    "ddp_train": "labs_utils.workers.ddp_train",
    "dcp_workers": "labs_utils.workers.dcp_workers",
    "notebook_tools": "labs_utils.maintenance.notebook_tools",
    "bench": "labs_utils.maintenance.bench",
}


class _MovedModules:
    """Import hook: ``labs_utils.<old name>`` gives the module or package it moved to."""

    def find_spec(self, fullname, path=None, target=None):
        import importlib.util

        old = fullname.removeprefix(__name__ + ".")
        if fullname.startswith(__name__ + ".") and old in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        import importlib
        import warnings

        new = _MOVED[spec.name.rsplit(".", 1)[1]]
        warnings.warn(
            f"{spec.name} has moved: import from {new}",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(new)

    def exec_module(self, module):
        pass


import sys as _sys  # noqa: E402

_sys.meta_path.append(_MovedModules())
