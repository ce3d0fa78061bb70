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
