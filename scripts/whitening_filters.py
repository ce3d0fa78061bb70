"""Rule whitening_filters: the whitening filters of a size x size stem, from the training split."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.archive import load_arrays
    from cifar_repro.mean import mean_image
    from cifar_repro.whitening import save_filters, whitening_filters

    images = load_arrays(snakemake.input.arrays)["data"]
    size = int(snakemake.wildcards.size)
    filters = whitening_filters(images, mean_image(images, *images.shape[2:]), size)
    save_filters(filters, snakemake.output[0])
    log.info("%s: %d whitening filters of %dx%d -> %s", snakemake.input.arrays, len(filters), size, size,
             snakemake.output[0])  # fmt: skip
