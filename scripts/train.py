"""Rule train: one experiment's training job (the loop is cifar_repro/training.py); an experiment
with `distributed` is started through MXNet's tracker (cifar_repro/distributed.py)."""

import os

from cifar_repro.rule import rule_log

with rule_log(snakemake):
    if "distributed" not in snakemake.params.experiment:
        # MXNet sizes its CPU thread pool when it loads: to the cores Snakemake gave this job, not
        # every core of the machine, so that jobs running side by side do not oversubscribe them
        # (a distributed launch shares them out between its workers itself)
        os.environ.setdefault("OMP_NUM_THREADS", str(snakemake.threads))
    from cifar_repro.distributed import train_distributed
    from cifar_repro.layout import ExperimentFiles
    from cifar_repro.training import Data, Devices, train

    inputs, params = snakemake.input, snakemake.params
    workers = params.experiment.get("distributed", {}).get("workers", 1)
    arguments = dict(
        name=snakemake.wildcards.experiment,
        experiment=params.experiment,
        data=Data(inputs.train_rec, inputs.train_idx, inputs.val_rec, inputs.val_idx, inputs.get("mean")),
        outputs=ExperimentFiles(**dict(snakemake.output.items())),
        checkpoint_dir=params.checkpoint_dir,
        # the job's GPUs, shared out between its workers
        granted=Devices(
            snakemake.resources.gpu // workers, params.gpu_ids, params.lock_dir, params.allow_cpu_fallback
        ),
        init_symbol=inputs.get("init_symbol"),
        init_params=inputs.get("init_params"),
    )
    if "distributed" in params.experiment:
        train_distributed(arguments, snakemake.log[0], params.lock_dir, snakemake.threads)
    else:
        train(**arguments)
