"""Rule export_images: one split as PNG files and the MXNet .lst that im2rec packs."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.archive import load_arrays
    from cifar_repro.images import export_split

    count = export_split(
        load_arrays(snakemake.input.arrays), snakemake.output.images, snakemake.output.lst, snakemake.threads
    )
    log.info("%s: %d PNG images -> %s, list %s", snakemake.input.arrays, count, *snakemake.output)
