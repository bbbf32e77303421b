"""``CheckpointManager``: ``last.pth`` to resume, ``best.pth`` to deploy, a short history."""

from __future__ import annotations

import math
import numbers
import os
import re
import shutil
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checkpoints import (
    CheckpointError,
    atomic_write,
    load_checkpoint,
    nested_values,
    remove_abandoned_temp_files,
    safe_load_check,
    save_checkpoint,
)
from .inputs import with_metadata_of

__all__ = ["CheckpointManager", "SavedCheckpoint"]


def _numpy_path(obj: Any, where: str) -> str:
    """Where ``obj`` holds a numpy value or a str/int/float subclass (``torch.__version__``), which
    ``weights_only`` loading refuses: e.g. ``"state['x'] is a numpy.float64"``, or ''.
    """
    for w, v in nested_values(obj, where):
        mod = type(v).__module__
        if mod == "numpy" or mod.startswith("numpy."):
            return f"{w} is a {mod.split('.')[0]}.{type(v).__name__}"
        for base in (str, float, int):
            if isinstance(v, base) and type(v) not in (base, bool):
                return (
                    f"{w} is a {mod}.{type(v).__name__} (a subclass of {base.__name__}); store "
                    f"{base.__name__}(x) instead"
                )
    return ""


@dataclass(frozen=True)
class SavedCheckpoint:
    """What ``CheckpointManager.save`` did; prints as one line (see ``CheckpointManager``)."""

    epoch: int
    metric: str
    value: float
    is_best: bool
    best_value: float
    best_epoch: int
    files: tuple[str, ...]

    def __repr__(self) -> str:
        star = f" (best: {self.best_value:.4g} at epoch {self.best_epoch})"
        star = " (new best)" if self.is_best else star
        return (
            f"epoch {self.epoch}: {self.metric}={self.value:.4g}{star} -> {', '.join(self.files)}"
        )


_EPOCH_FILE = re.compile(r"^epoch_(\d+)\.pth$")
_RECORD = "checkpoint_manager"  # last.pth[_RECORD], and best.pth's attribute _checkpoint_manager


class CheckpointManager:
    """Keep ``last.pth`` (to resume), ``best.pth`` (weights only, to deploy) and a short history.

    ``save`` writes each file atomically; ``best.pth`` (``state[best_key]``, or the whole state with
    ``best_key=None``) when ``metrics[metric]`` improves (``mode`` "min" or "max"); the newest
    ``keep_last`` epoch files. ``load_last()`` resumes; saving into a folder that holds an
    earlier run without calling it first is refused.

    Example::

        >>> import tempfile, torch
        >>> from pathlib import Path
        >>> from labs_utils.toolkit import CheckpointManager, load_checkpoint
        >>> tmp = tempfile.TemporaryDirectory()
        >>> folder = Path(tmp.name) / "run"
        >>> model = torch.nn.Linear(2, 2)
        >>> manager = CheckpointManager(folder, metric="val_loss", mode="min", keep_last=1)
        >>> for epoch, loss in enumerate([0.9, 0.5, 0.7]):
        ...     state = {"model": model.state_dict()}
        ...     print(manager.save(state, epoch=epoch, metrics={"val_loss": loss}))
        epoch 0: val_loss=0.9 (new best) -> last.pth, epoch_0000.pth, best.pth
        epoch 1: val_loss=0.5 (new best) -> last.pth, epoch_0001.pth, best.pth
        epoch 2: val_loss=0.7 (best: 0.5 at epoch 1) -> last.pth, epoch_0002.pth
        >>> list(load_checkpoint(manager.best_path))  # weights only, ready to deploy
        ['weight', 'bias']
        >>> resumed = CheckpointManager(folder, metric="val_loss", mode="min")  # after a crash
        >>> ckpt = resumed.load_last()
        >>> ckpt["epoch"], ckpt["metrics"], resumed.best_value, resumed.best_epoch
        (2, {'val_loss': 0.7}, 0.5, 1)
        >>> tmp.cleanup()
    """

    LAST = "last.pth"
    BEST = "best.pth"

    def __init__(
        self,
        folder: str | os.PathLike,
        metric: str = "val_loss",
        mode: str = "min",
        keep_last: int = 2,
        best_key: str | None = "model",
    ):
        if not isinstance(folder, (str, os.PathLike)):
            raise TypeError(
                f"CheckpointManager() needs a folder path such as 'runs/exp1', got {type(folder).__name__}"
            )
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(
                f"{self.folder}: is a file; CheckpointManager needs a folder to keep "
                "last.pth and best.pth in"
            )
        if not isinstance(metric, str) or not metric:
            raise TypeError(
                f"metric must be the name of a metric such as 'val_loss', got {metric!r}"
            )
        if mode not in ("min", "max"):
            raise ValueError(
                f"mode must be 'min' (lower {metric} is better, e.g. a loss) or 'max' (higher is "
                f"better, e.g. accuracy), got {mode!r}"
            )
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0:
            raise ValueError(
                f"keep_last must be an int >= 0 (how many epoch_NNNN.pth files to keep), got {keep_last!r}"
            )
        if best_key is not None and not isinstance(best_key, str):
            raise TypeError(
                f"best_key must be the key of the weights in your state (e.g. 'model') or None, "
                f"got {best_key!r}"
            )
        self.metric, self.mode = metric, mode
        self.keep_last, self.best_key = keep_last, best_key
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.skipped: list[str] = []  # why load_last() passed over a file
        self._resumed = False

    def __repr__(self) -> str:
        return (
            f"CheckpointManager({self.folder.as_posix()!r}, metric={self.metric!r}, mode={self.mode!r}, "
            f"keep_last={self.keep_last})"
        )

    @property
    def last_path(self) -> Path:
        return self.folder / self.LAST

    @property
    def best_path(self) -> Path:
        return self.folder / self.BEST

    def epoch_paths(self) -> list[Path]:
        """The ``epoch_NNNN.pth`` files in the folder, oldest epoch first."""
        paths = self.folder.glob("epoch_*.pth")  # none if there is no folder
        found = [(int(m.group(1)), p) for p in paths if (m := _EPOCH_FILE.match(p.name))]
        return [p for _, p in sorted(found)]

    def _better(self, value: float) -> bool:
        if self.best_value is None:
            return True
        return value < self.best_value if self.mode == "min" else value > self.best_value

    # --- input checks: nothing is written before they pass --------------------------------------

    def _check_metrics(self, metrics: Any) -> float:
        """``metrics[self.metric]`` as a float, after checking that every metric will load back."""
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"metrics must be a dict such as {{'{self.metric}': 0.42}}, got {type(metrics).__name__}"
            )
        if self.metric not in metrics:
            raise ValueError(
                f"metrics has no {self.metric!r} (it has {sorted(map(str, metrics))}); the manager "
                f"picks best.pth by {self.metric!r}: add it, or create the manager with "
                "metric='<one of those>'"
            )
        for name, v in metrics.items():
            if isinstance(v, torch.Tensor):
                raise TypeError(
                    f"metrics[{name!r}] is a tensor; store a plain Python number: "
                    f"metrics[{name!r}] = value.item()"
                )
            found = _numpy_path(v, f"metrics[{name!r}]")
            if found:
                raise TypeError(
                    f"{found}; store plain Python numbers (float(x) or x.item()): torch.load with "
                    "weights_only=True refuses it, so the checkpoint would not load"
                )
            if not isinstance(v, (numbers.Real, str)):
                raise TypeError(
                    f"metrics[{name!r}] is a {type(v).__name__}; metrics must be plain numbers or strings"
                )
        value = metrics[self.metric]
        if isinstance(value, (bool, str)) or not isinstance(value, numbers.Real):
            raise TypeError(f"metrics[{self.metric!r}] must be a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            kept = (
                f"{self.LAST} still holds the previous save: resume from it, e.g. with a lower learning rate"
                if self.last_path.exists()
                else "check the loss and learning rate"
            )
            raise ValueError(
                f"metrics[{self.metric!r}] is {value}, not a finite number: training has probably "
                f"diverged. Nothing was saved; {kept}"
            )
        return value

    def _check_state(self, state: Any, epoch: Any, metrics: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise TypeError(
                f"save() needs the training state as a dict (e.g. {{'model': model.state_dict(), "
                f"'optimizer': optimizer.state_dict()}}), got {type(state).__name__}"
            )
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise TypeError(
                f"epoch must be a plain int >= 0, got {epoch!r} ({type(epoch).__name__}); "
                "use int(epoch) for numpy or tensor values"
            )
        found = _numpy_path(state, "state")
        if found:
            raise TypeError(
                f"{found}; convert it (float(x), int(x), str(x), torch.from_numpy(a)) before saving: "
                "torch.load with weights_only=True refuses it, so the checkpoint would not load"
            )
        if _RECORD in state:
            raise ValueError(
                f"state has a key {_RECORD!r}, which the manager writes itself; rename it"
            )
        if "epoch" in state and state["epoch"] != epoch:
            raise ValueError(
                f"state['epoch'] is {state['epoch']!r} but epoch={epoch}; pass the epoch once, as epoch="
            )
        if "metrics" in state and state["metrics"] != dict(metrics):
            raise ValueError(
                "state['metrics'] differs from metrics=...; pass the metrics once, as metrics="
            )
        if self.best_key is not None and self.best_key not in state:
            raise ValueError(
                f"state has no {self.best_key!r} entry for best.pth (it has {sorted(map(str, state))}); "
                "create the manager with best_key='<the key of your model weights>', or best_key=None "
                "to save the whole state as best.pth"
            )
        if self.best_key is not None and not isinstance(state[self.best_key], Mapping):
            raise TypeError(
                f"state[{self.best_key!r}] is a {type(state[self.best_key]).__name__}, not a state_dict; "
                f"best.pth holds weights to deploy: store model.state_dict() under {self.best_key!r}"
            )

    def save(
        self, state: Mapping[str, Any], *, epoch: int, metrics: Mapping[str, float]
    ) -> SavedCheckpoint:
        """Save ``last.pth`` (``state`` plus the epoch, the metrics and the record of the best),
        ``best.pth`` when the metric improves (carrying the same record) and the epoch file; a
        state that ``weights_only=True`` loading would refuse raises before any file is replaced.
        """
        value = self._check_metrics(metrics)
        self._check_state(state, epoch, metrics)
        self._claim_folder()
        is_best = self._better(value)
        best_value, best_epoch = (value, epoch) if is_best else (self.best_value, self.best_epoch)
        record = dict(
            metric=self.metric, mode=self.mode, best_value=best_value, best_epoch=best_epoch
        )

        def before_replacing_last(tmp: Path) -> None:
            safe_load_check(state, self.last_path, "state")(tmp)
            # best.pth carries its record: a crash before last.pth is replaced loses nothing
            if is_best:
                save_checkpoint(self._best_object(state, record), self.best_path)
                self.best_value, self.best_epoch = value, epoch

        # last.pth is written and checked first, put in place last
        with atomic_write(self.last_path, check=before_replacing_last) as f:
            torch.save({**state, "epoch": epoch, "metrics": dict(metrics), _RECORD: record}, f)
        files = [self.LAST] + self._keep_history(epoch) + ([self.BEST] if is_best else [])
        return SavedCheckpoint(
            epoch, self.metric, value, is_best, float(best_value), int(best_epoch), tuple(files)
        )

    def _claim_folder(self) -> None:
        if not self._resumed:
            found = [p.name for p in (self.last_path, self.best_path) if p.exists()]
            if found:
                raise FileExistsError(
                    f"{self.folder}: already holds {' and '.join(found)} from an earlier run; call "
                    "load_last() first to resume it, or use an empty folder for a new run"
                )
        self._resumed = True  # from now on this manager owns the folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def _best_object(self, state: Mapping[str, Any], record: dict[str, Any]) -> OrderedDict:
        """What ``best.pth`` holds: the weights (or the whole state) with the record as an attribute."""
        weights = state[self.best_key] if self.best_key is not None else state
        best = with_metadata_of(weights, weights)  # without the flag an assign=True load leaves
        best._checkpoint_manager = dict(record)  # type: ignore[attr-defined]
        return best

    def _keep_history(self, epoch: int) -> list[str]:
        """Link ``last.pth`` as the epoch's file; keep the newest ``keep_last`` of this run and drop the
        files from later epochs (an abandoned run's), never the one just written.
        """
        if not self.keep_last:
            return []
        epoch_file = self.folder / f"epoch_{epoch:04d}.pth"
        self._link_or_copy(self.last_path, epoch_file)
        paths = self.epoch_paths()
        newer = paths.index(epoch_file) + 1  # later epochs: the abandoned run's
        for old in paths[: max(0, newer - self.keep_last)] + paths[newer:]:
            old.unlink(missing_ok=True)
        return [epoch_file.name]

    @staticmethod
    def _link_or_copy(src: Path, dst: Path) -> None:
        tmp = dst.with_name(f".{dst.name}.link.tmp")
        tmp.unlink(missing_ok=True)
        try:
            # same bytes, no second write; os.replace makes it appear atomically
            os.link(src, tmp)
            os.replace(tmp, dst)
        except OSError:
            tmp.unlink(missing_ok=True)
            with atomic_write(dst) as f, open(src, "rb") as s:
                shutil.copyfileobj(s, f)

    def load_last(
        self, map_location: Any = "cpu", weights_only: bool = True
    ) -> dict[str, Any] | None:
        """The newest complete checkpoint (``last.pth``, else the newest epoch file), or ``None``.

        Also removes interrupted saves' temporary files and restores the best value and epoch (from
        ``best.pth``'s record, else the checkpoint's). Files that do not load are skipped with a
        warning; the reasons are in ``self.skipped``.
        """
        self._resumed = True
        self.skipped = []
        remove_abandoned_temp_files(self.folder)  # a save in progress keeps its file (a lock)
        ckpt = self._newest_checkpoint(map_location, weights_only)
        record = (ckpt.get(_RECORD) or {}) if ckpt is not None else {}
        self._check_record(record, "the checkpoint")
        best_record = self._best_record(weights_only)
        if best_record is not None:
            self._check_record(best_record, self.BEST)
            record = best_record  # it describes the best.pth on disk, whatever happened after
        self.best_value, self.best_epoch = (record.get("best_value"), record.get("best_epoch"))
        return ckpt

    def _newest_checkpoint(self, map_location: Any, weights_only: bool) -> dict[str, Any] | None:
        for path in [self.last_path, *reversed(self.epoch_paths())]:
            ckpt = self._try_load(path, map_location, weights_only)
            if ckpt is not None:
                return ckpt
        if self.skipped:
            raise CheckpointError(
                f"{self.folder}: no checkpoint in it loads ({len(self.skipped)} tried); the first "
                f"error: {self.skipped[0]}"
            )
        return None

    def _try_load(self, path: Path, map_location: Any, weights_only: bool) -> dict[str, Any] | None:
        """``path`` loaded, or ``None`` (missing, or skipped with a warning if it does not load)."""
        if not path.exists():
            return None
        try:
            ckpt = load_checkpoint(path, map_location=map_location, weights_only=weights_only)
            if not isinstance(ckpt, Mapping) or "epoch" not in ckpt:
                raise CheckpointError(
                    f"{path}: not a CheckpointManager checkpoint (no 'epoch' entry)"
                )
        except CheckpointError as e:
            self.skipped.append(str(e))
            warnings.warn(f"skipping {path.name}: {e}; trying an older checkpoint", stacklevel=4)
            return None
        return dict(ckpt)

    def _best_record(self, weights_only: bool) -> dict[str, Any] | None:
        """The record ``best.pth`` carries, or ``None`` (no ``best.pth``, or one written without it)."""
        if not self.best_path.exists():
            return None
        try:  # mmap: the record is in the pickle, the weights are not read
            best = load_checkpoint(self.best_path, weights_only=weights_only, mmap=True)
        except CheckpointError as e:
            warnings.warn(
                f"{self.BEST} does not load ({e}); the best value comes from {self.LAST}",
                stacklevel=3,
            )
            return None
        record = getattr(best, "_checkpoint_manager", None)
        return dict(record) if isinstance(record, Mapping) else None

    def _check_record(self, record: Mapping[str, Any], where: str) -> None:
        if (
            record.get("metric", self.metric) != self.metric
            or record.get("mode", self.mode) != self.mode
        ):
            raise ValueError(
                f"{self.folder}: {where} was saved tracking {record.get('metric')!r} "
                f"({record.get('mode')}), but this manager tracks {self.metric!r} ({self.mode}); "
                "create it with the same metric and mode"
            )

    def load_best(self, map_location: Any = "cpu", weights_only: bool = True) -> Any:
        """What ``best.pth`` holds (by default the model's ``state_dict``)."""
        return load_checkpoint(self.best_path, map_location=map_location, weights_only=weights_only)
