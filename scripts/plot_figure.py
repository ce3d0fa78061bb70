"""Rule plot_figure: one configured comparison figure, as PNG and SVG."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.figures import draw, plot_data, save_figure
    from cifar_repro.metrics import load_metrics

    spec = snakemake.params.spec
    metrics = {
        name: load_metrics(path)
        for name, path in zip(spec["experiments"], snakemake.input.metrics, strict=True)
    }
    save_figure(draw(spec, plot_data(spec, metrics)), list(snakemake.output))
    log.info("figure %r (%s of %s): %s", spec["title"], spec["kind"], ", ".join(spec["experiments"]),
             ", ".join(snakemake.output))  # fmt: skip
