import atexit
import gc
import os
import sys
from collections import Counter
from pathlib import Path

import pytest

# The repository's own tools (tools/) are not installed with labs_utils: import them from the
# repository root, however pytest was started.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


# Kernels started by the tests print plain tracebacks (tools/ipython_kernel_config.py says why).
os.environ.setdefault("WORKBOOK_PLAIN_TRACEBACKS", "1")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # When an xdist worker's Python begins to exit, the controller has every result. Python's
    # own teardown of its modules (torch, Lightning, transformers, ONNX Runtime loaded) then
    # takes 1-2 s that the controller waits for. This ends the process without it: exit handlers
    # registered later (by the tests' imports) run first, those registered before this conftest
    # (pytest's plugins) do not run. Under coverage, whose data is written at exit, it steps aside.
    @atexit.register
    def _end_worker_without_teardown():
        if "coverage" in sys.modules:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def pytest_collection_modifyitems(config, items):
    """The order in which `make test` (xdist, --dist loadscope --no-loadscope-reorder) hands out
    whole notebooks and test modules: notebooks and modules marked ``heavy`` first, then the quick
    modules, each group largest first. The quick ones then fill the end of the run on both
    workers, instead of one worker finishing a slow module while the other waits."""
    scope = [item.nodeid.rsplit("::", 1)[0] for item in items]
    size = Counter(scope)
    heavy = {s for s, item in zip(scope, items) if item.get_closest_marker("heavy")}
    slow = {s for s in size if s.endswith(".ipynb")} | heavy
    order = {s: (s not in slow, -size[s], i) for i, s in enumerate(dict.fromkeys(scope))}
    items[:] = [item for _, item in sorted(zip(scope, items), key=lambda p: order[p[0]])]


def pytest_collection_finish(session):
    # What collection imported (torch, the checks, the test modules: some 600,000 objects) lives
    # to the end of the run. Frozen, it is left out of the collector's full passes, which then
    # walk only what the tests make (test_framework.py alone: 1.2 s less CPU).
    gc.freeze()


@pytest.fixture(autouse=True)
def _seed():
    import torch  # here, not at the top: the xdist controller need not import torch

    torch.manual_seed(0)
    yield


# Debian's Chromium as the browser tests start it: headless, as root, and without the background
# connections this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium_args():
    return list(CHROMIUM_ARGS)
