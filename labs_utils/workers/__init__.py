"""Code that runs in other processes, which a notebook cannot define: ``distributed`` (notebook
07's DDP ranks, ``spawn_workers``), ``ddp_train`` (the same under ``torchrun``) and ``dcp_workers``
(notebook 11). The notebooks print the functions these processes run: what a lesson shows runs."""
