localrules:
    report,


# `snakemake report`: Snakemake's own self-contained HTML report of every figure and table, built
# with the same (resolved) config. Its script is the only one that starts Snakemake: only
# Snakemake can make its report.
rule report:
    input:
        figures=figure_targets(),
        tables=table_targets(),
    output:
        f"{OUT}/report.html",
    log:
        f"{OUT}/logs/report.log",
    conda:
        "../../envs/report.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        snakefile=workflow.main_snakefile,
        config=config,
    script:
        "../../scripts/report.py"
