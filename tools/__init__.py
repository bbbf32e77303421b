"""The workbook's own tools (repository tooling, not part of the installed ``labs_utils``).

Nothing here is imported by the notebooks; the Makefile drives it, from the repository root
(``python -m tools.<name>``):

* ``notebook_tools``: ``sanitize`` (stable stored outputs, short intended errors), ``learner``
  (the learner edition, kept safe across updates), ``reading-time`` (each notebook's minutes),
  ``links`` (backticked notebook names in markdown become links); ``make notebooks`` /
  ``make learner``.
* ``doctor``: ``make doctor``, is this machine ready for the workbook.
* ``bench``: ``make bench``, the save/load benchmark.
* ``jupyterlab-overrides.json``, ``ipython_kernel_config.py``: what ``make setup`` copies into
  ``.venv/`` (no JupyterLab news pop-up; under ``make lab`` an error's message first).
* ``gpu_run``: ``make test-gpu``, every notebook with the GPU visible, ``build/gpu-report.md``;
  ``gpu_lease.sh`` does a whole GPU check (install, ``make test-gpu``, copy the report out) in
  one go on a freshly leased machine.
"""
