rule plot_samples:
    input:
        arrays=f"{OUT}/{{dataset}}/arrays/train.npz",
        script=entry_script("plot_samples.py"),
    output:
        report(
            f"{OUT}/figures/{{dataset}}_samples.png",
            caption="../report/samples.rst",
            category="Data",
            labels={"dataset": "{dataset}", "figure": "first training images"},
        ),
    log:
        f"{OUT}/logs/plot_samples/{{dataset}}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        grid=config["sample_grid"],
    shell:
        "python {input.script} --arrays {input.arrays} --dataset {wildcards.dataset}"
        " --rows {params.grid[rows]} --columns {params.grid[columns]} --output {output} --log {log}"


rule plot_figure:
    input:
        metrics=figure_metrics,
        script=entry_script("figures.py"),
    output:
        png=report(
            f"{OUT}/figures/{{figure}}.png",
            caption="../report/figure.rst",
            category=figure_category,
            labels={"figure": "{figure}"},
        ),
        svg=f"{OUT}/figures/{{figure}}.svg",
    log:
        f"{OUT}/logs/plot_figure/{{figure}}.log",
    conda:
        "../../envs/plot.yaml"
    params:
        spec=lambda wildcards: json.dumps(figure_spec(wildcards), sort_keys=True),
        metrics=lambda wildcards, input: named(
            dict(zip(figure_spec(wildcards)["experiments"], input.metrics))
        ),
    shell:
        "python {input.script} --spec-json {params.spec:q} --metrics {params.metrics}"
        " --output {output.png} --output {output.svg} --log {log}"


rule summary_tables:
    input:
        runs=[experiment_files(name)["run"] for name in EXPERIMENTS],
        metrics=[experiment_files(name)["metrics"] for name in EXPERIMENTS],
        script=entry_script("summary.py"),
    output:
        summary_csv=report(
            f"{OUT}/tables/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
            labels={"table": "results vs published"},
        ),
        summary_md=f"{OUT}/tables/summary.md",
        params_csv=report(
            f"{OUT}/tables/params_diff.csv",
            caption="../report/params_diff.rst",
            category="Summary",
            labels={"table": "hyperparameters that differ"},
        ),
        params_md=f"{OUT}/tables/params_diff.md",
    log:
        f"{OUT}/logs/summary_tables.log",
    conda:
        "../../envs/plot.yaml"
    params:
        runs=named({name: experiment_files(name)["run"] for name in EXPERIMENTS}),
        metrics=named({name: experiment_files(name)["metrics"] for name in EXPERIMENTS}),
        published=json.dumps(config["published_accuracy"]),
        groups=json.dumps(summary_groups()),
    shell:
        "python {input.script} --run {params.runs} --metrics {params.metrics}"
        " --published-json {params.published:q} --groups-json {params.groups:q}"
        " --summary-csv {output.summary_csv} --summary-md {output.summary_md}"
        " --params-csv {output.params_csv} --params-md {output.params_md} --log {log}"
