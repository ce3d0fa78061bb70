"""Rule plot_figure: one configured comparison figure, as PNG and SVG."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.figures import draw, plot_data, save_figure
    from cifar_repro.metrics import load_experiment_metrics

    spec = snakemake.params.spec
    metrics = load_experiment_metrics(snakemake.params.experiment_runs, list(snakemake.input.metrics))
    save_figure(draw(spec, plot_data(spec, metrics)), list(snakemake.output))
    log.info("figure %r (%s of %s): %s", spec["title"], spec["kind"], ", ".join(spec["experiments"]),
             ", ".join(snakemake.output))  # fmt: skip
