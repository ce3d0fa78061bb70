"""Rule summary_tables: results against the published numbers, and the hyperparameters that differ."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.tables import build_tables

    params = snakemake.params
    names = [run for runs in params.experiment_runs.values() for run in runs]
    summary = build_tables(
        run_paths=dict(zip(names, snakemake.input.runs, strict=True)),
        metrics_paths=dict(zip(names, snakemake.input.metrics, strict=True)),
        published=params.published,
        groups=params.groups,
        outputs=dict(snakemake.output.items()),
        experiment_runs=params.experiment_runs,
    )
    for row in summary.itertuples():
        log.info(
            "%s: final validation accuracy %.2f %% over %d seed(s) (best %.2f %% at epoch %d)",
            row.experiment, row.final_val_accuracy, row.seeds, row.best_val_accuracy, row.best_epoch,
        )  # fmt: skip
