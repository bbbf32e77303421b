"""The toolkit the lessons build up to: production-grade tools for checkpoint files.

Each notebook first does the job with plain PyTorch, then meets the tool that does it for any
case, with errors that name the file and the fix. This package exports what the notebooks and
the command line use; the rest stays importable from its module:

* saving and loading (``checkpoints``): ``save_checkpoint`` (atomic: a crash leaves the old file
  or the new one), ``load_checkpoint`` (safe defaults, clear errors), ``CheckpointError``; also
  ``atomic_write`` there;
* ``CheckpointManager`` (``manager``): ``last.pth`` to resume, ``best.pth`` to deploy, history,
  and a resume that survives a crash at any moment;
* random generator states (``rng``): ``capture_rng_state`` / ``restore_rng_state``;
* state_dicts (``state_dicts``, ``prefixes``): ``summarize``, ``diff`` (what ``load_state_dict``
  would say, without loading), ``load_matching`` (load what fits, with a report),
  ``normalize_keys`` (strip ``module.`` / ``_orig_mod.``; ``WRAPPER_PREFIXES`` and
  ``detect_prefixes`` there);
* files (``inspector``, ``convert``): ``inspect_checkpoint`` (what a file holds, without running
  code from it), ``InspectError``, ``convert_to_safetensors``; both also from the command line
  (``python -m labs_utils inspect|convert``, in ``cli``).

Underneath: ``formats`` tells files apart from their bytes (for the loader, the inspector and the
converter alike), ``inputs`` takes a model, a state_dict or a path and finds the weights of a
checkpoint, ``render`` draws tables.

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

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .convert import convert_to_safetensors
from .inspector import InspectError, inspect_checkpoint
from .manager import CheckpointManager
from .prefixes import normalize_keys
from .rng import capture_rng_state, restore_rng_state
from .state_dicts import diff, load_matching, summarize

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "CheckpointError",
    "CheckpointManager",
    "capture_rng_state",
    "restore_rng_state",
    "summarize",
    "diff",
    "load_matching",
    "normalize_keys",
    "inspect_checkpoint",
    "InspectError",
    "convert_to_safetensors",
]
