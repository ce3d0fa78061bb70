"""Rule report: Snakemake's self-contained HTML report of every figure and table."""

from cifar_repro.rule import rule_log

with rule_log(snakemake):
    from cifar_repro.report import build_report

    targets = [*snakemake.input.figures, *snakemake.input.tables]
    build_report(snakemake.params.snakefile, snakemake.params.config, snakemake.output[0], targets)
