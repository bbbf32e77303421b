"""Maintenance tools for the workbook itself, outside the lesson API.

Nothing here is imported by the notebooks. ``gpu_run`` is ``make test-gpu``: it executes every
notebook with the GPU visible and writes ``build/gpu-report.md``; ``gpu_lease.sh`` does a whole
GPU check (install, ``make test-gpu``, copy the report out) in one go on a freshly leased machine.
"""
