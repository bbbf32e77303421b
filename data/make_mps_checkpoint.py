"""Remake the "saved on Apple's MPS" checkpoint in data/ on a machine without MPS.

    python data/make_mps_checkpoint.py          # writes data/weights_mps.pth
    python data/make_mps_checkpoint.py --check  # remakes it in a temporary folder and compares

Made with the CUDA files' mechanism (make_cuda_checkpoint.py, whose ``tagged_as`` this script
uses): what a save on an MPS device adds to a ``torch.save`` file is the storage's *location
tag*, ``"mps"`` (PyTorch's own ``_mps_tag``), written into ``data.pkl``; the bytes are copied to
host memory first, as for CUDA. ``torch.load`` then treats the file exactly
like one written on a Mac: without ``map_location``, on a machine without MPS, PyTorch's own
``_mps_deserialize`` calls ``storage.mps()``, which raises "Storage device not recognized: mps".

The weights are those of ``labs_utils.models.SimpleModel`` right after ``torch.manual_seed(0)``.
"""

from __future__ import annotations

from make_cuda_checkpoint import main

FILES = {"mps": "weights_mps.pth"}

if __name__ == "__main__":
    raise SystemExit(main(files=FILES, doc=__doc__))
