"""Tables that read well in a notebook (HTML) and in a terminal (text), deterministically, so
notebook outputs stay stable; every report object renders through ``Table``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Report", "Table", "human_bytes"]


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB"):
        if abs(value) < 1024:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


class Report:
    """A result that shows as its ``table()``: text for ``str``/``repr``, HTML in a notebook."""

    def __repr__(self) -> str:
        return self.table().to_text()

    def _repr_html_(self) -> str:
        return self.table().to_html()


@dataclass(repr=False)
class Table(Report):
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str = ""
    notes: list[str] = field(default_factory=list)

    def _cells(self) -> list[list[str]]:
        return [["" if v is None else str(v) for v in row] for row in self.rows]

    def to_text(self) -> str:
        cells = self._cells()
        widths = [len(c) for c in self.columns]
        for row in cells:
            widths = [max(w, len(v)) for w, v in zip(widths, row)]
        lines = []
        if self.title:
            lines.append(self.title)
        if self.columns and cells:
            lines.append("  ".join(c.ljust(w) for c, w in zip(self.columns, widths)).rstrip())
            lines.append("  ".join("-" * w for w in widths))
            lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
        lines += self.notes
        return "\n".join(lines)

    def to_html(self) -> str:
        esc = html.escape
        parts = []
        if self.title:
            parts.append(f"<p><b>{esc(self.title)}</b></p>")
        if self.columns and self.rows:
            head = "".join(f"<th style='text-align:left'>{esc(c)}</th>" for c in self.columns)
            body = "".join(
                "<tr>"
                + "".join(f"<td style='text-align:left'><code>{esc(v)}</code></td>" for v in row)
                + "</tr>"
                for row in self._cells()
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        parts += [f"<p>{esc(n)}</p>" for n in self.notes]
        return "\n".join(parts)

    def table(self) -> Table:
        return self
