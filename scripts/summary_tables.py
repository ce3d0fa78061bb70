"""Rule summary_tables: results against the published numbers, and the hyperparameters that differ."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.tables import build_tables

    names, params = snakemake.params.experiments, snakemake.params
    summary = build_tables(
        run_paths=dict(zip(names, snakemake.input.runs, strict=True)),
        metrics_paths=dict(zip(names, snakemake.input.metrics, strict=True)),
        published=params.published,
        groups=params.groups,
        outputs=dict(snakemake.output.items()),
    )
    for row in summary.itertuples():
        log.info(
            "%s: final validation accuracy %.2f %% (best %.2f %% at epoch %d)",
            row.experiment, row.final_val_accuracy, row.best_val_accuracy, row.best_epoch,
        )  # fmt: skip
