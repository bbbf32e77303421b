"""Print the help of ``python -m labs_utils`` and of each of its commands (``inspect``,
``convert``, ...), as JSON ``{"": top-level help, "inspect": ..., ...}``.

tools/site/build.py runs this once per build, so the command pages always show what the commands
print now. It runs ``python -m labs_utils [COMMAND] --help`` in one process (torch is imported once,
not once per command): the same module, arguments and output as from a shell.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def help_of(args: list[str]) -> str:
    out = io.StringIO()
    sys.argv = ["python -m labs_utils", *args, "--help"]
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_module("labs_utils", run_name="__main__", alter_sys=False)
        except SystemExit as e:
            if e.code not in (0, None):
                raise
    return out.getvalue().rstrip() + "\n"


def main() -> int:
    helps = {"": help_of([])}
    m = re.search(r"\{([a-z0-9_,\-]+)\}", helps[""])
    if not m:
        print("python -m labs_utils --help lists no {command,...}", file=sys.stderr)
        return 1
    for command in m.group(1).split(","):
        helps[command] = help_of([command])
    print(json.dumps(helps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
