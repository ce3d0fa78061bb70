"""Rule summary_tables: results against the published numbers, and the hyperparameters that differ."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.metrics import load_metrics
    from cifar_repro.tables import group_diffs, load_run, summary_table, write_tables

    names, params = snakemake.params.experiments, snakemake.params
    runs = {name: load_run(path, name) for name, path in zip(names, snakemake.input.runs, strict=True)}
    metrics = {name: load_metrics(path) for name, path in zip(names, snakemake.input.metrics, strict=True)}
    summary = summary_table(runs, metrics, params.published)
    write_tables(summary, group_diffs(params.groups, runs), **dict(snakemake.output.items()))
    for row in summary.itertuples():
        log.info(
            "%s: final validation accuracy %.2f %% (best %.2f %% at epoch %d)",
            row.experiment, row.final_val_accuracy, row.best_val_accuracy, row.best_epoch,
        )  # fmt: skip
