"""The toolkit the lessons build up to: production-grade tools for checkpoint files.

Each notebook first does the job with plain PyTorch, then meets the tool that does it for any
case, with errors that name the file and the fix:

* saving and loading (``checkpoints``): ``save_checkpoint`` (atomic: a crash leaves the old file
  or the new one), ``load_checkpoint`` (safe defaults, clear errors), ``atomic_write``;
* ``CheckpointManager`` (``manager``): ``last.pth`` to resume, ``best.pth`` to deploy, history,
  and a resume that survives a crash at any moment;
* random generator states (``rng``): ``capture_rng_state`` / ``restore_rng_state``;
* state_dicts (``state_dicts``, ``prefixes``): ``summarize``, ``diff`` (what ``load_state_dict``
  would say, without loading), ``load_matching`` (load what fits, with a report),
  ``normalize_keys`` (strip ``module.`` / ``_orig_mod.``);
* files (``inspector``, ``convert``): ``inspect_checkpoint`` (what a file holds, without running
  code from it), ``convert_to_safetensors``; both also from the command line
  (``python -m labs_utils inspect|convert``, in ``cli``).

Example::

    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from labs_utils.toolkit import save_checkpoint, load_checkpoint
    >>> tmp = tempfile.TemporaryDirectory()
    >>> model = torch.nn.Linear(2, 2)
    >>> path = Path(tmp.name) / "runs" / "last.pth"
    >>> _ = save_checkpoint({"model": model.state_dict(), "epoch": 3}, path)
    >>> load_checkpoint(path)["epoch"]
    3
    >>> tmp.cleanup()
"""

from .checkpoints import CheckpointError, atomic_write, load_checkpoint, save_checkpoint
from .convert import ConvertResult, convert_to_safetensors
from .inspector import CheckpointReport, InspectError, inspect_checkpoint
from .manager import CheckpointManager, SavedCheckpoint
from .prefixes import (
    WRAPPER_PREFIXES,
    detect_prefixes,
    normalize_keys,
    strip_wrapper_prefixes,
)
from .rng import capture_rng_state, restore_rng_state
from .state_dicts import (
    LoadReport,
    StateDictDiff,
    StateDictSummary,
    as_state_dict,
    diff,
    load_matching,
    summarize,
)

__all__ = [
    "CheckpointError",
    "atomic_write",
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointManager",
    "SavedCheckpoint",
    "capture_rng_state",
    "restore_rng_state",
    "summarize",
    "diff",
    "load_matching",
    "as_state_dict",
    "StateDictSummary",
    "StateDictDiff",
    "LoadReport",
    "normalize_keys",
    "strip_wrapper_prefixes",
    "WRAPPER_PREFIXES",
    "inspect_checkpoint",
    "detect_prefixes",
    "CheckpointReport",
    "InspectError",
    "convert_to_safetensors",
    "ConvertResult",
]
