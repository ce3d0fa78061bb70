rule plot_samples:
    input:
        f"{OUT}/{{dataset}}/arrays/train.npz",
    output:
        report(
            f"{OUT}/figures/{{dataset}}_samples.png",
            caption="../report/samples.rst",
            category="Data",
            labels={"dataset": "{dataset}", "figure": "first training images"},
        ),
    params:
        grid=config["sample_grid"],
    log:
        f"{OUT}/logs/plot_samples/{{dataset}}.log",
    conda:
        "../../envs/plot.yaml"
    shell:
        "python {SCRIPTS}/plot_samples.py --arrays {input} --dataset {wildcards.dataset}"
        " --rows {params.grid[rows]} --columns {params.grid[columns]} --output {output} --log {log}"
