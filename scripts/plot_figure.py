"""Rule plot_figure: one configured comparison figure, as PNG and SVG."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.figures import draw, plot_data, save_figure
    from cifar_repro.metrics import load_experiment_metrics
    from cifar_repro.published import load_curve

    spec = snakemake.params.spec
    metrics = load_experiment_metrics(snakemake.params.experiment_runs, list(snakemake.input.metrics))
    curve = load_curve(snakemake.input.published_curve) if "published_curve" in spec else None
    save_figure(draw(spec, plot_data(spec, metrics, curve)), list(snakemake.output))
    log.info("figure %r (%s of %s): %s", spec["title"], spec["kind"], ", ".join(spec["experiments"]),
             ", ".join(snakemake.output))  # fmt: skip
