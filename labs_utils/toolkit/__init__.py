"""The toolkit the lessons build up to: production-grade tools for checkpoint files.

Each notebook does the job with plain PyTorch first, then meets the tool that does it for any
case. Exported here is what the notebooks and the command line use (the rest stays importable
from its module): ``checkpoints`` (``save_checkpoint``, atomic; ``load_checkpoint``, safe),
``manager`` (``CheckpointManager``), ``rng``, ``state_dicts`` (``summarize``, ``diff``,
``load_matching``), ``prefixes`` (``normalize_keys``), ``inspector`` and ``convert`` (also as
``python -m labs_utils inspect|convert``). Underneath: ``formats`` tells files apart, ``inputs``
takes what the functions accept, ``render`` draws tables.
"""

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .convert import convert_to_safetensors
from .inspector import InspectError, inspect_checkpoint
from .manager import CheckpointManager
from .prefixes import normalize_keys
from .rng import capture_rng_state, restore_rng_state
from .state_dicts import diff, load_matching, summarize

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "CheckpointManager"]
__all__ += ["capture_rng_state", "restore_rng_state", "summarize", "diff", "load_matching"]
__all__ += ["normalize_keys", "inspect_checkpoint", "InspectError", "convert_to_safetensors"]
