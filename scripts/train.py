"""Rule train: one run's training job (the loop is cifar_repro/training.py; a distributed job is
launched through MXNet's tracker by cifar_repro/launcher.py)."""

import os

from cifar_repro.rule import rule_log

# the log is opened once the job holds the run's lease: a second trainer must not empty the first's
with rule_log(snakemake, open_log=False):
    if "distributed" not in snakemake.params.settings:
        # MXNet sizes its CPU thread pool when it loads: to the cores Snakemake gave this job, not
        # every core of the machine, so that jobs running side by side do not oversubscribe them
        # (a distributed launch shares them out between its workers itself)
        os.environ.setdefault("OMP_NUM_THREADS", str(snakemake.threads))
    from cifar_repro.devices import DeviceGrant
    from cifar_repro.job import TrainingJob
    from cifar_repro.layout import PackedDataset, RunFiles
    from cifar_repro.run import run_training
    from cifar_repro.schema import experiment_defaults

    inputs, params = snakemake.input, snakemake.params
    experiment = experiment_defaults(params.settings)
    workers = experiment.get("distributed", {}).get("workers", 1)
    job = TrainingJob(
        run=snakemake.wildcards.run,
        experiment=experiment,
        data=PackedDataset(
            inputs.train_rec, inputs.train_idx, inputs.val_rec, inputs.val_idx, inputs.get("mean")
        ),
        outputs=RunFiles(**dict(snakemake.output.items())),
        checkpoint_dir=params.checkpoint_dir,
        log=snakemake.log[0],
        # the job's GPUs, shared out between its workers
        granted=DeviceGrant(
            snakemake.resources.gpu // workers, params.gpu_ids, params.lock_dir, params.allow_cpu_fallback
        ),
        init_symbol=inputs.get("init_symbol"),
        init_params=inputs.get("init_params"),
        whitening=inputs.get("whitening"),
    )
    run_training(job, snakemake.threads)
