"""Rule train: one experiment's training job (the loop is cifar_repro/training.py)."""

from cifar_repro.rule import rule_log

with rule_log(snakemake):
    from cifar_repro.layout import ExperimentFiles
    from cifar_repro.training import Data, Devices, train

    inputs, params = snakemake.input, snakemake.params
    train(
        name=snakemake.wildcards.experiment,
        experiment=params.experiment,
        data=Data(inputs.train_rec, inputs.train_idx, inputs.val_rec, inputs.val_idx, inputs.get("mean")),
        outputs=ExperimentFiles(**dict(snakemake.output.items())),
        checkpoint_dir=params.checkpoint_dir,
        granted=Devices(snakemake.resources.gpu, params.gpu_ids, params.lock_dir, params.allow_cpu_fallback),
        init_symbol=inputs.get("init_symbol"),
        init_params=inputs.get("init_params"),
    )
