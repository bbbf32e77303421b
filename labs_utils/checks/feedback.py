"""What a learner sees: a verdict as one line of plain text and as a coloured box."""

from __future__ import annotations

import html
from dataclasses import dataclass

CORRECT, WRONG, NOT_ATTEMPTED = "correct", "wrong", "not attempted"


_STYLE = {  # border and a translucent background: readable on light and dark themes alike
    CORRECT: ("#2e7d32", "rgba(46, 125, 50, 0.12)"),
    WRONG: ("#d84315", "rgba(230, 81, 0, 0.12)"),
    NOT_ATTEMPTED: ("#808080", "rgba(128, 128, 128, 0.12)"),
}
_CLASS = {CORRECT: "correct", WRONG: "wrong", NOT_ATTEMPTED: "unattempted"}
_NOT_ATTEMPTED_TEXT = (
    "replace the placeholder in the cell above with your answer, then run this check again."
)


def _box(status: str, body: str) -> str:
    border, background = _STYLE[status]
    return (
        f'<div class="labs-check labs-check--{_CLASS[status]}" style="border-left: 4px solid '
        f"{border}; background: {background}; padding: 6px 10px; margin: 2px 0; "
        f'border-radius: 2px; white-space: pre-wrap;">{body}</div>'
    )


@dataclass
class CheckResult:
    name: str
    status: str
    message: str
    notebook: str = ""  # the lesson that teaches it, named in a hint only if it is another one
    tried: str = ""  # the last call of the learner's code: what went in, what came out
    where: str = ""  # the learner's own line, when their code raised
    home: str = ""  # the notebook the exercise is in

    def __bool__(self) -> bool:
        return self.status == CORRECT

    def _see(self) -> str:
        other = self.notebook and self.notebook.split("_")[0] != self.home.split("_")[0]
        return f"{self.notebook}.ipynb" if other else ""

    def __repr__(self) -> str:
        if self.status == CORRECT:
            return f"Correct! {self.message}".rstrip()
        if self.status == NOT_ATTEMPTED:
            return f"Not attempted yet: {_NOT_ATTEMPTED_TEXT}"
        see = f" (see {self._see()})" if self._see() else ""
        where = f"\n  at: {self.where}" if self.where else ""
        tried = f"\n  tried: {self.tried}" if self.tried else ""
        return f"Not yet: {self.message}{see}{where}{tried}"

    __str__ = __repr__

    def _repr_html_(self) -> str:
        e = html.escape
        if self.status == CORRECT:
            return _box(CORRECT, f"<b>Correct!</b> {e(self.message)}")
        if self.status == NOT_ATTEMPTED:
            return _box(NOT_ATTEMPTED, f"<b>Not attempted yet:</b> {e(_NOT_ATTEMPTED_TEXT)}")
        see = self._see()
        link = f' (see <a href="{e(see)}">{e(see)}</a>)' if see else ""
        body = f"<b>Not yet:</b> {e(self.message)}{link}"
        if self.where:
            body += f"<br><small>at: <code>{e(self.where)}</code></small>"
        if self.tried:
            body += f"<br><small>tried: <code>{e(self.tried)}</code></small>"
        body += f'<br><small>stuck? <code>check.hint("{e(self.name)}")</code></small>'
        return _box(WRONG, body)


class Text(str):
    """A string that a notebook shows as it is (and in a box), not as a quoted repr."""

    kind, code = NOT_ATTEMPTED, False

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        text = html.escape(str(self))
        return _box(self.kind, f'<pre style="margin: 0;">{text}</pre>' if self.code else text)
