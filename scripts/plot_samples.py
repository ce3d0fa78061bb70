"""Rule plot_samples: the first training images of a dataset with their class names."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.archive import load_arrays
    from cifar_repro.figures import save_figure
    from cifar_repro.samples import first_samples, plot_grid

    dataset, grid = snakemake.wildcards.dataset, snakemake.params.grid
    images, names = first_samples(load_arrays(snakemake.input.arrays), grid["rows"] * grid["columns"])
    log.info("first %d training images: %s", len(names), ", ".join(names))
    figure = plot_grid(images, names, grid["columns"], f"{dataset}: first {len(names)} training images")
    save_figure(figure, [snakemake.output[0]])
