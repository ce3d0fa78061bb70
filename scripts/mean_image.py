"""Rule mean_image: the training split's mean image for crops of height x width."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    import numpy as np

    from cifar_repro.archive import load_arrays
    from cifar_repro.mean import mean_image, save_mean

    height, width = int(snakemake.wildcards.height), int(snakemake.wildcards.width)
    mean = mean_image(load_arrays(snakemake.input.arrays)["data"], height, width)
    save_mean(mean, snakemake.output[0])
    log.info(
        "%s: mean image %s, per-channel means %s -> %s",
        snakemake.input.arrays, mean.shape, np.round(mean.mean(axis=(1, 2)), 3).tolist(), snakemake.output[0],
    )  # fmt: skip
