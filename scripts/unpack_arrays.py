"""Rule unpack_arrays: both splits of an untrusted archive as checked numpy arrays."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.archive import read_archive, save_arrays

    dataset = snakemake.wildcards.dataset
    splits = read_archive(snakemake.input.archive, dataset)
    for split, arrays in splits.items():
        save_arrays(arrays, snakemake.output[split])
        log.info(
            "%s %s: %d images, %d classes -> %s",
            dataset, split, len(arrays["data"]), len(arrays["label_names"]), snakemake.output[split],
        )  # fmt: skip
