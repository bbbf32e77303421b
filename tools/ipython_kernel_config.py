"""IPython kernels of the workbook's .venv read this file: `make setup` copies it to
.venv/etc/ipython/ipython_kernel_config.py.

Under `make lab` and `make learner-lab` (they set WORKBOOK_MESSAGE_FIRST=1), an error shows
its message (the traceback's last line) first, then a short note, then the full traceback: the
form the stored outputs of intended errors have (`tools/notebook_tools.py`, `message_first`).
`make notebooks` sets neither this nor WORKBOOK_PLAIN_TRACEBACKS (below, set by test runs), so its
kernels are plain IPython.
"""

import os

c = get_config()  # noqa: F821 - IPython's config loader defines it

# The same note as tools.notebook_tools.MESSAGE_FIRST_NOTE (tests/learner/test_learner_edition.py).
NOTE = "\x1b[2m(the message first, as its last line reads; the full traceback follows)\x1b[0m"

HOOK = f"""
def _workbook_message_first():
    import IPython

    shell = IPython.get_ipython()
    show = shell._showtraceback
    note = {NOTE!r}

    def _showtraceback(etype, evalue, stb):
        if len(stb) > 1 and not (len(stb) > 2 and stb[1] == note and stb[0] == stb[-1]):
            stb = [stb[-1], note, *stb]
        return show(etype, evalue, stb)

    shell._showtraceback = _showtraceback


_workbook_message_first()
del _workbook_message_first
"""

if os.environ.get("WORKBOOK_MESSAGE_FIRST") == "1":
    c.InteractiveShellApp.exec_lines = [HOOK]

# The test suite's kernels (tests/conftest.py sets WORKBOOK_PLAIN_TRACEBACKS=1) print plain
# tracebacks: nbval compares an error's type and message, never its traceback, and IPython's
# default form reads and colours the source of every torch file a traceback passes through,
# about 0.1 s of CPU for each of the notebooks' intended errors. Learners and `make notebooks`
# keep IPython's default.
if os.environ.get("WORKBOOK_PLAIN_TRACEBACKS") == "1":
    c.InteractiveShell.xmode = "Plain"
