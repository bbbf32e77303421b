"""Maintenance tools for the workbook itself, outside the lesson API.

Nothing here is imported by the notebooks; the Makefile drives it:

* ``notebook_tools``: ``sanitize`` (stable stored outputs), ``learner`` (the learner edition),
  ``reading-time`` (each notebook's minutes); ``make notebooks`` / ``make learner``.
* ``bench``: ``make bench``, the save/load benchmark.
* ``gpu_run``: ``make test-gpu``, every notebook with the GPU visible, ``build/gpu-report.md``;
  ``gpu_lease.sh`` does a whole GPU check (install, ``make test-gpu``, copy the report out) in
  one go on a freshly leased machine.
"""
