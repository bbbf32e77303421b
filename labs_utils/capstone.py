"""Scaffolding for notebooks/12_capstone_lab.ipynb: the metadata class the pipeline stores, and
the harmless "malicious" payload the safe-loading check plants (it only writes a marker file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunInfo", "MarkerPayload"]


@dataclass
class RunInfo:
    """Metadata a team stores next to its weights (a class, so safe loading must be told about it)."""

    run_name: str
    epochs: int
    val_accuracy: float


class MarkerPayload:
    """Unpickling this object calls ``Path.touch(marker)``: a stand-in for arbitrary code."""

    def __init__(self, marker: str | os.PathLike):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))
