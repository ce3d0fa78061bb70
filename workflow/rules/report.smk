localrules:
    report,


# `snakemake report`: Snakemake's own self-contained HTML report of every figure and table, built
# with the same (resolved) config.
rule report:
    input:
        figures=figure_targets(),
        tables=table_targets(),
        script=entry_script("build_report.py"),
    output:
        f"{OUT}/report.html",
    log:
        f"{OUT}/logs/report.log",
    conda:
        "../../envs/report.yaml"
    params:
        snakefile=workflow.main_snakefile,
        config=json.dumps(config),
    shell:
        "python {input.script} --snakefile {params.snakefile} --config-json {params.config:q}"
        " --output {output} --log {log} {input.figures} {input.tables}"
