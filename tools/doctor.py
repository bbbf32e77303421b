"""``make doctor``: is this machine ready for the workbook? Each line a finding, each problem a fix.

    python -m tools.doctor          # from the repository root, with .venv's Python

Checks Python, the pinned packages (torch first: CPU or CUDA build, and why), a GPU, free disk,
JupyterLab (and its news pop-up setting), and a kernel that starts and runs ``1 + 1``. Exit
status 1 when something would stop a learner (a "FAIL" line), 0 otherwise ("warn" lines are
worth reading but do not stop anything).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTED_PYTHON = (3, 11)
FREE_DISK_WARN_GB = 2.0
FREE_DISK_FAIL_GB = 0.3

_results: list[tuple[str, str, str]] = []


def report(level: str, what: str, fix: str = "") -> None:
    """Print one finding: ``ok``, ``info``, ``warn`` or ``FAIL``, with a fix for a problem."""
    _results.append((level, what, fix))
    print(f"{level:<5} {what}", flush=True)
    if fix:
        print(f"      fix: {fix}", flush=True)


def _pins() -> dict[str, str]:
    """Package name -> pinned version, from requirements.txt (``name==version`` lines)."""
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*==\s*([^\s;#]+)", line)
        if m:
            pins[re.sub(r"\[.*\]", "", m.group(1)).lower()] = m.group(2)
    return pins


def check_python() -> None:
    v = sys.version_info
    where = (
        "the workbook's .venv"
        if Path(sys.prefix).resolve() == (ROOT / ".venv").resolve()
        else sys.prefix
    )
    text = f"Python {v.major}.{v.minor}.{v.micro} ({where}) on {platform.system()} {platform.machine()}"
    if (v.major, v.minor) == TESTED_PYTHON:
        report("ok", text)
    elif (v.major, v.minor) < (3, 10):
        report(
            "FAIL",
            text + ": too old",
            "install Python 3.11, delete .venv/ and run make setup again",
        )
    else:
        report(
            "warn",
            text + ": the workbook is tested with Python 3.11 only",
            "if something fails, install Python 3.11, delete .venv/ and run make setup again",
        )
    if where != "the workbook's .venv":
        report(
            "warn",
            "this is not the workbook's .venv",
            "run make doctor (it uses .venv/bin/python), or activate .venv first",
        )


def check_packages() -> bool:
    """Every pin of requirements.txt installed at its version; False when torch is missing."""
    missing, other = [], []
    for name, want in _pins().items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            missing.append(name)
            continue
        if have.split("+")[0] != want:
            other.append(f"{name} {have} (pinned {want})")
    try:
        md.version("labs-utils")
    except md.PackageNotFoundError:
        missing.append("labs-utils (this repository, editable)")
    if missing:
        report(
            "FAIL",
            f"not installed: {', '.join(missing)}",
            "make setup (it shows pip's progress; see README, Troubleshooting if it fails)",
        )
    if other:
        report(
            "warn",
            f"other versions than requirements.txt pins: {', '.join(other)}",
            "make setup installs the pinned ones; stored outputs were made with them",
        )
    if not missing and not other:
        report(
            "ok",
            f"the {len(_pins())} pinned packages of requirements.txt and labs_utils",
        )
    return "torch" not in missing


def check_torch_and_gpu() -> None:
    t0 = time.time()
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure is the finding
        report(
            "FAIL",
            f"import torch failed: {e}",
            "make setup; if it persists, delete .venv/ and run it again",
        )
        return
    seconds = time.time() - t0
    cuda = torch.version.cuda
    if cuda is None:
        why = {
            "Darwin": "macOS wheels have no CUDA",
            "Windows": "PyPI's Windows wheel is the CPU build",
        }.get(
            platform.system(),
            "installed before the first make, as README, Set up shows",
        )
        report(
            "ok",
            f"torch {torch.__version__}: the CPU build ({why}); import took {seconds:.1f} s",
        )
    else:
        report(
            "ok",
            f"torch {torch.__version__}: CUDA {cuda} build (PyPI's default on Linux x86_64); import took {seconds:.1f} s",
        )
    if cuda is not None:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            report("ok", f"GPU: {', '.join(names)} (GPU cells run for real in make lab)")
        elif visible is not None and visible.strip() in ("", "-1"):
            report(
                "info",
                f"GPU: hidden by CUDA_VISIBLE_DEVICES={visible!r}; GPU cells print 'skipped: no CUDA'",
            )
        else:
            report(
                "info",
                "GPU: none usable (no NVIDIA GPU or driver); everything runs on the CPU, GPU cells print 'skipped: no CUDA'",
            )
    else:
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            report(
                "info",
                "GPU: Apple MPS available; the workbook runs on the CPU, its CUDA cells print 'skipped: no CUDA'",
            )
        else:
            report(
                "info",
                "GPU: none (CPU build); every notebook runs on the CPU, GPU cells print 'skipped: no CUDA'",
            )
    try:
        import labs_utils  # noqa: F401
    except Exception as e:  # noqa: BLE001
        report(
            "FAIL",
            f"import labs_utils failed: {e}",
            "make setup (installs this repository in editable mode)",
        )


def check_disk() -> None:
    free = shutil.disk_usage(ROOT).free / 1e9
    text = f"free disk where the workbook is: {free:.1f} GB"
    if free < FREE_DISK_FAIL_GB:
        report(
            "FAIL",
            text,
            "free some space: the notebooks write small files under runs/, the learner edition under learner/",
        )
    elif free < FREE_DISK_WARN_GB:
        report(
            "warn",
            text + " (tight)",
            f"keep at least {FREE_DISK_WARN_GB:.0f} GB free; make clean removes scratch files",
        )
    else:
        report("ok", text)


def check_jupyterlab() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "jupyterlab", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        report(
            "FAIL",
            "JupyterLab does not start: " + (proc.stderr.strip().splitlines() or ["?"])[-1],
            "make setup",
        )
        return
    report("ok", f"JupyterLab {proc.stdout.strip()}")
    overrides = (
        Path(sys.prefix)
        / "share"
        / "jupyter"
        / "lab"
        / "settings"
        / "overrides.d"
        / "workbook.json"
    )
    try:
        news = json.loads(overrides.read_text())["@jupyterlab/apputils-extension:notification"][
            "fetchNews"
        ]
    except (OSError, ValueError, KeyError):
        news = None
    if news == "false":
        report("ok", "JupyterLab opens without the 'Jupyter news?' pop-up")
    else:
        report(
            "warn",
            "JupyterLab will ask about Jupyter news on first start",
            "make setup (copies tools/jupyterlab-overrides.json into .venv), or answer the pop-up once",
        )
    kernel_config = Path(sys.prefix) / "etc" / "ipython" / "ipython_kernel_config.py"
    if kernel_config.is_file():
        report("ok", "make lab / make learner-lab show an error's message first")
    else:
        report(
            "warn",
            "errors in make lab / make learner-lab show their message last (plain IPython)",
            "make setup (copies tools/ipython_kernel_config.py into .venv)",
        )


def check_kernel() -> None:
    """Start the notebooks' kernel (python3), run 1 + 1, stop it."""
    try:
        from jupyter_client.manager import start_new_kernel
    except Exception as e:  # noqa: BLE001
        report("FAIL", f"jupyter_client is missing: {e}", "make setup")
        return
    import tempfile

    t0 = time.time()
    km = kc = None
    log = tempfile.TemporaryFile(mode="w+")  # the kernel's own messages, shown on failure
    try:
        km, kc = start_new_kernel(
            kernel_name="python3", startup_timeout=120, stderr=log, stdout=log
        )
        reply = kc.execute_interactive(
            "1 + 1",
            timeout=60,
            store_history=False,
            output_hook=lambda msg: _collect(msg),
        )
        ok = reply["content"]["status"] == "ok" and _collected == ["2"]
        if ok:
            report(
                "ok",
                f"a notebook kernel starts and runs 1 + 1 = 2 ({time.time() - t0:.1f} s)",
            )
        else:
            report(
                "FAIL",
                f"the kernel ran 1 + 1 but answered {_collected or reply['content']}",
                "make setup; then make doctor again",
            )
    except Exception as e:  # noqa: BLE001
        report(
            "FAIL",
            f"the notebook kernel did not start: {type(e).__name__}: {e}",
            "make setup; if it persists: .venv/bin/python -m ipykernel install --sys-prefix",
        )
        log.seek(0)
        print("".join(log.readlines()[-15:]), end="")
    finally:
        if kc is not None:
            kc.stop_channels()
        if km is not None:
            km.shutdown_kernel(now=True)
        log.close()


_collected: list[str] = []


def _collect(msg: dict) -> None:
    if msg["msg_type"] == "execute_result":
        _collected.append(msg["content"]["data"].get("text/plain", ""))


def check_learner_folder() -> None:
    learner = ROOT / "learner"
    if learner.is_dir():
        n = len(list(learner.glob("[0-9][0-9]_*.ipynb")))
        report(
            "info",
            f"your learner edition: learner/ holds {n} notebooks (make learner-lab opens it)",
        )
    else:
        report(
            "info",
            "no learner edition yet: make learner-lab creates learner/ and opens it",
        )


def check_side_folders() -> None:
    """The folders make setup adds for notebook 19's child processes (not on the kernel's path)."""
    for folder, package, where in (
        ("numpy1", "numpy-1.25.2", "section 5"),
        ("deepspeed", "deepspeed-0.19.8", "section 6"),
    ):
        if (Path(sys.prefix) / folder / f"{package}.dist-info").is_dir():
            report("ok", f".venv/{folder}/ holds {package.replace('-', ' ')} (notebook 19 {where})")
        else:
            report(
                "info",
                f"no .venv/{folder}/: notebook 19 {where} will stop and say so",
                "make setup (it installs only what is missing)",
            )


def main() -> int:
    print("make doctor: is this machine ready for the workbook?", flush=True)
    check_python()
    have_torch = check_packages()
    if have_torch:
        check_torch_and_gpu()
    check_disk()
    check_jupyterlab()
    check_kernel()
    check_learner_folder()
    check_side_folders()
    problems = [r for r in _results if r[0] == "FAIL"]
    warnings = [r for r in _results if r[0] == "warn"]
    if problems:
        print(
            f"\n{len(problems)} problem(s): follow each 'fix:' above, then run make doctor again."
        )
        return 1
    tail = f" ({len(warnings)} warning(s) above)" if warnings else ""
    print(f"\nReady{tail}. Learners: make learner-lab. Instructors: make lab.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
