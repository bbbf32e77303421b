"""Process workers: code that runs in other processes, which a notebook cannot define.

* ``distributed``: the DDP lesson's workers (two gloo processes train, save from rank 0, resume
  with every rank loading the optimizer), ``spawn_workers`` (free port, timeout, logs, retry),
  and ``exit_without_teardown``.
* ``ddp_train``: the same training as a ``torchrun`` entry point
  (``torchrun --standalone --nproc_per_node=2 -m labs_utils.workers.ddp_train --out runs/ddp``).
* ``dcp_workers``: the distributed-checkpoint lesson's workers (``shard_model`` with FSDP2,
  ``dcp.save`` / ``dcp.load`` on two ranks or one process). They read DCP folders, which
  unpickles them: trusted folders only.

The notebooks print the functions these processes run (``inspect.getsource``), so what a lesson
shows is what runs.
"""
