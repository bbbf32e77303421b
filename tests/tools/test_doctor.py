"""make doctor (tools/doctor.py): every finding has a fix, a real problem makes it exit 1."""

from tools import doctor


def test_missing_pinned_package_is_a_problem_with_a_fix(monkeypatch, capsys):
    monkeypatch.setattr(doctor, "_results", [])
    monkeypatch.setattr(doctor, "_pins", lambda: {"torch": "2.13.0", "no-such-package-xyz": "1.0"})
    assert doctor.check_packages() is True  # torch is there, so the torch checks run
    out = capsys.readouterr().out
    assert "FAIL  not installed: no-such-package-xyz" in out
    assert "fix: make setup" in out


def test_main_exits_1_on_a_problem_and_0_when_ready(monkeypatch, capsys):
    for name in (
        "check_python",
        "check_torch_and_gpu",
        "check_disk",
        "check_jupyterlab",
        "check_kernel",
        "check_learner_folder",
    ):
        monkeypatch.setattr(doctor, name, lambda: None)
    monkeypatch.setattr(doctor, "_results", [])
    monkeypatch.setattr(doctor, "check_packages", lambda: doctor.report("ok", "x"))
    assert doctor.main() == 0 and "Ready." in capsys.readouterr().out
    monkeypatch.setattr(doctor, "_results", [])
    monkeypatch.setattr(doctor, "check_packages", lambda: doctor.report("FAIL", "x", "do y"))
    assert doctor.main() == 1 and "1 problem(s)" in capsys.readouterr().out


def test_the_pins_are_read_from_requirements_txt():
    pins = doctor._pins()
    assert pins["torch"] == "2.13.0" and "jupyterlab" in pins
