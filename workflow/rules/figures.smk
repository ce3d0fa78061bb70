# Light rules: they run where Snakemake runs, not as cluster jobs.
localrules:
    plot_samples,
    plot_figure,
    summary_tables,
    claims_table,


rule plot_samples:
    input:
        arrays=layout.split_arrays(OUT, "{dataset}", "train"),
    output:
        report(
            layout.samples_figure(OUT, "{dataset}"),
            caption="../report/samples.rst",
            category="Data",
            labels={"dataset": "{dataset}", "figure": "first training images"},
        ),
    log:
        f"{OUT}/logs/plot_samples/{{dataset}}.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        grid=canonical(config["sample_grid"]),
    script:
        "../../scripts/plot_samples.py"


rule plot_figure:
    input:
        metrics=figure_metrics,
        published_curve=figure_published_curve,
    output:
        png=report(
            layout.figure(OUT, "{figure}", "png"),
            caption="../report/figure.rst",
            category=figure_category,
            labels={"figure": "{figure}"},
        ),
        svg=layout.figure(OUT, "{figure}", "svg"),
    log:
        f"{OUT}/logs/plot_figure/{{figure}}.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        spec=lambda wildcards: canonical(figure_spec(wildcards)),
        experiment_runs=figure_runs,
    script:
        "../../scripts/plot_figure.py"


rule summary_tables:
    input:
        runs=[layout.run_files(OUT, run).run for run in RUNS],
        metrics=runs_metrics(EXPERIMENTS),
    output:
        summary_csv=report(
            layout.table(OUT, "summary", "csv"),
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "results vs published"},
        ),
        summary_md=layout.table(OUT, "summary", "md"),
        params_csv=report(
            layout.table(OUT, "params_diff", "csv"),
            caption="../report/params_diff.rst",
            category="Summary",
            labels={"table": "hyperparameters that differ"},
        ),
        params_md=layout.table(OUT, "params_diff", "md"),
    log:
        f"{OUT}/logs/summary_tables.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        experiment_runs={name: list(runs) for name, runs in RUNS_OF.items()},
        published=canonical(config["published_accuracy"]),
        groups=canonical(summary_groups()),
    script:
        "../../scripts/summary_tables.py"


rule claims_table:
    input:
        metrics=runs_metrics(claims_experiment_seeds()),
        curves=claims_curves(),
    output:
        csv=report(
            layout.table(OUT, "claims", "csv"),
            caption="../report/claims.rst",
            category="Claims",
            labels={"table": "the seeds' claims, with verdicts"},
        ),
        md=layout.table(OUT, "claims", "md"),
    log:
        f"{OUT}/logs/claims_table.log",
    conda:
        "../../envs/plot.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        claims=canonical(config["claims"]),
        experiment_seeds=claims_experiment_seeds(),
    script:
        "../../scripts/claims_table.py"
