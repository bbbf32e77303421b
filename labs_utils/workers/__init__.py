"""Process workers: code that runs in other processes, which a notebook cannot define.

``distributed`` (the DDP lesson, ``spawn_workers``), ``ddp_train`` (the same as a ``torchrun``
entry point) and ``dcp_workers`` (the distributed-checkpoint lesson). The notebooks print the
functions these processes run, so what a lesson shows is what runs.
"""
