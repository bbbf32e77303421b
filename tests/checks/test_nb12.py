"""Checks of notebooks/12_capstone_lab.ipynb, and the kill harness they use (labs_utils.checks.crash).

tests/checks/test_framework.py feeds every check its declared wrong and right answers; here are the cases
that need a set-up (a process-wide allowlist, a simulated CUDA build, no fork), the learner
simulation's false accepts and misleading hints, and the harness itself.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from labs_utils.capstone import RunInfo
from labs_utils.checks import check, crash, nb12_atomic, nb12_loading
from tests.checks import answers_nb12

pytestmark = pytest.mark.heavy  # started early by make test (tests/conftest.py)

check.capstone_save_atomically  # noqa: B018  (loads the module)

linux_fork = pytest.mark.skipif(not crash.can_fork(), reason="kill_at needs os.fork on Linux")


# ---------------------------------------------------------------- the notebook's solutions
def save_atomically(obj, path):  # notebooks/12_capstone_lab.ipynb, fix 6
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    if os.name == "posix":
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def load_model_card(path):  # fix 5
    with torch.serialization.safe_globals([RunInfo]):
        return torch.load(path, weights_only=True)


# ---------------------------------------------------------------- fix 6: atomic save
def test_solution_passes_without_production_tips():
    result = check.capstone_save_atomically(save_atomically)
    assert result, repr(result)
    assert "Production code" not in result.message and "detail" not in result.message


@pytest.mark.parametrize(
    "answer", [answers_nb12._save_named_temporary, answers_nb12._save_mkstemp_rename]
)
def test_owner_only_answers_pass_with_the_mode_tip(answer):
    result = check.capstone_save_atomically(answer)
    assert result, repr(result)
    if (
        os.name == "posix" and 0o666 & ~nb12_atomic._umask() != 0o600
    ):  # torch.save's files are not owner-only here
        assert "0o600" in result.message and "os.chmod" in result.message
        assert "fsync the folder" in result.message


KILLED_ANSWERS = [
    (answers_nb12._save_direct, "in place"),
    (answers_nb12._save_bytes_then_overwrite, "serialising into memory"),
    (answers_nb12._save_with_backup, "backup"),
    (answers_nb12._save_remove_then_rename, "no last.pth at all"),
    (answers_nb12._save_temp_then_copy, "copying"),
]


@linux_fork
@pytest.mark.parametrize("answer,hint", KILLED_ANSWERS, ids=[a.__name__ for a, _ in KILLED_ANSWERS])
def test_a_real_kill_catches_each_non_atomic_save_every_time(answer, hint):
    """Kill moments are counted in write calls, not timed: the verdict is the same on every run."""
    for _ in range(3):
        result = check.capstone_save_atomically(answer)
        assert result.status == "wrong" and hint in result.message.lower(), repr(result)
        assert "SIGKILL" in result.message


@pytest.mark.parametrize("answer,hint", KILLED_ANSWERS, ids=[a.__name__ for a, _ in KILLED_ANSWERS])
def test_without_fork_the_disk_is_examined_at_the_same_moments(monkeypatch, answer, hint):
    monkeypatch.setattr(crash, "can_fork", lambda: False)
    result = check.capstone_save_atomically(answer)
    assert result.status == "wrong" and hint in result.message.lower(), repr(result)
    assert "a crash just before" in result.message
    assert check.capstone_save_atomically(save_atomically)


def test_backup_restored_in_except_baseexception_is_still_caught():
    """The simulation's false accept: a backup restored on any exception survives a Python
    exception, but not a kill."""
    import shutil

    def save(obj, path):
        path = Path(path)
        backup = path.with_suffix(".bak")
        if path.exists():
            shutil.copy(path, backup)
        try:
            torch.save(obj, path)
        except BaseException:
            if backup.exists():
                os.replace(backup, path)
            raise
        backup.unlink(missing_ok=True)

    result = check.capstone_save_atomically(save)
    assert result.status == "wrong" and "backup" in result.message


def test_labs_utils_is_rejected_however_it_is_imported():
    from labs_utils.toolkit import (
        save_checkpoint,  # the name bound here, not the module attribute
    )

    def save(obj, path):
        save_checkpoint(obj, path)

    result = check.capstone_save_atomically(save)
    assert result.status == "wrong" and "labs_utils" in result.message


@linux_fork
def test_the_kill_based_check_is_fast():
    start = time.perf_counter()
    assert check.capstone_save_atomically(save_atomically)
    # about 0.3 s on a 2-core machine shared with other jobs; the bound leaves room for slow CI
    assert time.perf_counter() - start < 5


# ---------------------------------------------------------------- fix 4: no GPU, in any build's words
NO_GPU_MESSAGES = [
    # torch.load without map_location, any build, when torch.cuda.is_available() is False
    "Attempting to deserialize object on a CUDA device but torch.cuda.is_available() is False. If you are "
    "running on a CPU-only machine, please use torch.load with map_location=torch.device('cpu')",
    # .to("cuda") with the CPU-only build
    "Torch not compiled with CUDA enabled",
    # .to("cuda") with the CUDA build on a machine without an NVIDIA driver
    "Found no NVIDIA driver on your system. Please check that you have an NVIDIA GPU and installed a driver "
    "from http://www.nvidia.com/Download/index.aspx",
    # the CUDA build with a driver, GPUs hidden (CUDA_VISIBLE_DEVICES=)
    "No CUDA GPUs are available",
    "CUDA error: no CUDA-capable device is detected",
]


@pytest.mark.parametrize("message", NO_GPU_MESSAGES)
def test_every_build_s_no_gpu_message_is_recognised(message):
    assert nb12_loading.needs_a_gpu(message)


@pytest.mark.parametrize(
    "message",
    [
        "Error(s) in loading state_dict for SimpleModel",
        "CUDA is great",
        "No such file or directory: 'gpu_weights_cuda0.pth'",
    ],
)
def test_other_errors_are_not_taken_for_a_missing_gpu(message):
    assert not nb12_loading.needs_a_gpu(message)


@pytest.mark.parametrize(
    "error",
    [
        AssertionError("Torch not compiled with CUDA enabled"),
        RuntimeError(NO_GPU_MESSAGES[2]),
        RuntimeError("No CUDA GPUs are available"),
    ],
    ids=["cpu-build", "cuda-build-no-driver", "cuda-build-no-visible-gpu"],
)
def test_moving_to_the_gpu_gets_one_hint_with_every_build(monkeypatch, error):
    """What .to('cuda') raises depends on the build of torch; the hint does not."""

    def no_gpu(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch.cuda, "_lazy_init", no_gpu)
    result = check.capstone_load_gpu_weights(answers_nb12._load_gpu_then_cuda)
    assert result.status == "wrong", repr(result)
    assert "moves the model to the GPU" in result.message and str(error)[:20] in result.message


def test_cuda_prefix_dict_hint_explains_the_full_tag():
    result = check.capstone_load_gpu_weights(answers_nb12._load_gpu_cuda_prefix_dict)
    assert "'cuda:0'" in result.message and "device index" in result.message
    # not torch's raw text
    assert "use torch.load with map_location=torch.device('cpu')" not in result.message


def test_simulation_right_answers_for_the_gpu_file():
    def load_gpu_weights(path):
        from labs_utils.models import SimpleModel

        model = SimpleModel()
        model.load_state_dict(torch.load(path, map_location=torch.device("cpu"), weights_only=True))
        return model

    assert check.capstone_load_gpu_weights(load_gpu_weights)


# ---------------------------------------------------------------- fix 5: one load, not the process
def test_process_wide_add_is_rejected_and_undone():
    before = set(torch.serialization.get_safe_globals())
    result = check.capstone_load_safely(answers_nb12._load_process_wide)
    assert result.status == "wrong" and "for this one load" in result.message
    assert set(torch.serialization.get_safe_globals()) == before


def test_an_answer_that_relies_on_an_earlier_process_wide_add_is_told_so():
    # in a cell above, outside the function
    torch.serialization.add_safe_globals([RunInfo])
    try:
        result = check.capstone_load_safely(lambda path: torch.load(path, weights_only=True))
        assert (
            result.status == "wrong" and "already allowed for the whole process" in result.message
        )
        # the learner's own entry stays
        assert RunInfo in torch.serialization.get_safe_globals()
        assert check.capstone_load_safely(load_model_card)
        assert RunInfo in torch.serialization.get_safe_globals()
    finally:
        torch.serialization.clear_safe_globals()


def test_string_in_safe_globals_gets_a_hint_not_an_attribute_error():
    result = check.capstone_load_safely(answers_nb12._load_by_name)
    assert "not strings" in result.message and "RunInfo" in result.message


# ---------------------------------------------------------------- fix 3: strictly, and fair hints
def test_strict_false_hint_only_for_answers_that_use_it():
    result = check.capstone_load_ddp_weights(answers_nb12._load_only_ddp_files)
    assert result.status == "wrong" and "strict=False" not in result.message
    result = check.capstone_load_ddp_weights(answers_nb12._load_into_data_parallel)
    assert result.status == "wrong" and "strict=False" not in result.message


def test_hard_coded_file_is_rejected(tmp_path):
    from labs_utils.models import Net

    other = tmp_path / "other.pth"
    torch.save(Net().state_dict(), other)

    def load_for_serving(path):
        model = Net()
        model.load_state_dict(torch.load(other))
        return model

    result = check.capstone_load_ddp_weights(load_for_serving)
    assert result.status == "wrong" and "another file" in result.message


# ---------------------------------------------------------------- fix 2 and fix 1: weak hints made specific
def test_param_groups_only_is_explained_not_a_type_error():
    result = check.capstone_save_for_resume(answers_nb12._save_param_groups_only)
    assert (
        "could not use your answer" not in result.message and "param_groups alone" in result.message
    )


def test_notebook_global_model_is_caught():
    from labs_utils.models import Net

    model = Net()  # the notebook's own `model`, not the argument

    def save_for_serving(m, path):
        torch.save(model.state_dict(), path)

    result = check.capstone_save_for_serving(save_for_serving)
    assert result.status == "wrong" and "model you were given" in result.message


# ---------------------------------------------------------------- the harness
def _plain_save(obj, path):
    torch.save(obj, path)


def _trace(fn, *args):
    """The write calls of ``fn(*args)``, run in this process."""
    with crash.watching() as trace:
        fn(*args)
    return trace


@linux_fork
def test_kill_at_kills_before_the_chosen_call_and_no_cleanup_runs(tmp_path):
    marker = tmp_path / "finally_ran"

    def save(obj, path):
        try:
            torch.save(obj, path)
        finally:
            marker.touch()

    trace = _trace(save, {"w": torch.ones(10)}, tmp_path / "a.pth")
    assert trace.calls[0] == "PyTorchFileWriter.write_record" and marker.exists()
    marker.unlink()
    kill = crash.kill_at(save, ({"w": torch.ones(10)}, tmp_path / "b.pth"), 0)
    assert kill.killed and kill.call == trace.calls[0]
    assert not marker.exists()  # SIGKILL: no finally block ran
    assert (tmp_path / "b.pth").stat().st_size == 0  # torch.save had opened (truncated) the file


@linux_fork
def test_kill_at_reports_a_function_that_ends_first(tmp_path):
    kill = crash.kill_at(_plain_save, ({"w": 1}, tmp_path / "c.pth"), 10_000)
    assert not kill.killed and kill.error is None and not kill.hung

    def fails(obj, path):
        raise ValueError("nope")

    kill = crash.kill_at(fails, ({}, tmp_path / "d.pth"), 0)
    assert not kill.killed and kill.error == "ValueError: nope"


@linux_fork
def test_kill_at_gives_up_on_a_function_that_hangs(tmp_path):
    kill = crash.kill_at(lambda: time.sleep(30), (), 0, timeout=0.5)
    assert kill.hung and not kill.killed and kill.seconds < 5


def test_watching_sees_calls_however_they_are_named(tmp_path):
    from os import replace as my_replace

    def save(obj, path):
        tmp = Path(path).with_suffix(".tmp")
        torch.save(obj, tmp)
        my_replace(tmp, path)

    with crash.watching(torch.serialization.save) as seen:
        save({"w": 1}, tmp_path / "e.pth")
    assert seen.calls[-1] == "os.replace"
    assert [Path(a["f"]).name for a in seen.arguments[torch.serialization.save]] == ["e.tmp"]
    assert sys.getprofile() is None


def test_gpu_check_judges_the_same_on_a_gpu_host(monkeypatch):
    """On a machine with a GPU the check still runs the answer as on the CPU-only serving host:
    a device chosen at run time picks the CPU, a hard-coded GPU device fails there."""
    # pretend this host has a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert check.capstone_load_gpu_weights(answers_nb12._load_gpu_device_at_run_time)
    result = check.capstone_load_gpu_weights(answers_nb12._load_gpu_map_cuda)
    assert result.status == "wrong" and "map_location='cpu'" in result.message
    result = check.capstone_load_gpu_weights(answers_nb12._load_gpu_default)
    assert result.status == "wrong" and "without map_location" in result.message
    assert torch.cuda.is_available()  # the pretence is back once the check is done


@linux_fork
def test_the_real_kill_lands_where_the_in_process_run_saw_the_gap():
    """The moment is an index into the answer's own write calls: the check's own file reads (the
    framework reading the answer's source, say) must not shift it."""
    import linecache

    linecache.clearcache()  # the framework will read this file's source again
    folder = Path(tempfile.mkdtemp())
    # as in the check: a previous checkpoint exists
    torch.save({"epoch": 1}, folder / "x.pth")
    calls = _trace(
        answers_nb12._save_remove_then_rename,
        {"epoch": 3, "w": torch.ones(1000)},
        folder / "x.pth",
    ).calls
    moment = calls.index("os.rename")
    result = check.capstone_save_atomically(answers_nb12._save_remove_then_rename)
    assert f"a SIGKILL just before its {nb12_atomic._ordinal(moment + 1)} of" in result.message, (
        result.message
    )
