"""Plot helpers (scaffolding): curves of several runs on shared axes, with a marker for a resume.
The notebooks call ``plt.show()`` themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["plot_runs"]


def plot_runs(
    ax,
    runs: Mapping[str, Sequence[float] | tuple[Sequence[float], Sequence[float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    resume_at: float | None = None,
    styles: Mapping[str, Mapping] | None = None,
    logy: bool = False,
):
    """Draw each run on ``ax`` (a matplotlib Axes) and return it: ``runs`` maps a legend label to
    ``ys`` (x = 1, 2, ...) or ``(xs, ys)``; ``resume_at`` draws a dotted vertical line; ``styles``
    gives matplotlib keyword arguments per label (e.g. ``{"resumed": {"linestyle": "--"}}``).
    """
    if not runs:
        raise ValueError("plot_runs() needs at least one run, e.g. {'uninterrupted': losses}")
    styles = styles or {}
    for label, data in runs.items():
        if isinstance(data, tuple) and len(data) == 2:
            xs, ys = data
        else:
            ys = list(data)
            xs = range(1, len(ys) + 1)
        if len(xs) != len(ys):
            raise ValueError(f"run {label!r}: {len(xs)} x values but {len(ys)} y values")
        ax.plot(list(xs), list(ys), label=label, **dict(styles.get(label, {})))
    if resume_at is not None:
        ax.axvline(resume_at, color="grey", linestyle=":", linewidth=1.5, label="crash + resume")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax
