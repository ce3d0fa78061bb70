localrules:
    download_pretrained,
    link_numbered_params,


rule download_pretrained:
    output:
        f"{OUT}/pretrained/{{model}}/{{file}}",
    log:
        f"{OUT}/logs/download_pretrained/{{model}}/{{file}}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=60,
    params:
        source=lambda wildcards: canonical(pretrained_source(wildcards)),
        download=canonical(config["download"]),
    script:
        "../../scripts/download_pretrained.py"


rule train:
    input:
        unpack(training_inputs),
    output:
        **experiment_outputs("{experiment}"),
    log:
        layout.training_log(OUT, "{experiment}"),
    benchmark:
        f"{OUT}/benchmarks/train/{{experiment}}.tsv"
    conda:
        training_env
    # a GPU job needs a few cores to decode and augment images (profiles raise it: set-threads)
    threads: 2
    resources:
        gpu=lambda wildcards: job_gpus(experiment_config(wildcards)),
        nodes=training_nodes,
        mpi=lambda wildcards: srun_steps(wildcards).get("mpi"),
        tasks=lambda wildcards: srun_steps(wildcards).get("tasks"),
        tasks_per_gpu=lambda wildcards: srun_steps(wildcards).get("tasks_per_gpu"),
        mem_mb=16000,
        runtime=training_minutes,
    params:
        experiment=lambda wildcards: canonical(experiment_config(wildcards)),
        checkpoint_dir=lambda wildcards: layout.checkpoint_dir(
            OUT, wildcards.experiment
        ),
        gpu_ids=config["gpu_ids"],
        lock_dir=config["gpu_lock_dir"],
        allow_cpu_fallback=config["allow_cpu_fallback"],
    script:
        "../../scripts/train.py"


# mx.model.load_checkpoint(prefix, epoch) reads <prefix>-<epoch:04d>.params: the final parameters
# under that name too, as a hard link (no copy).
rule link_numbered_params:
    input:
        lambda wildcards: layout.experiment_files(OUT, wildcards.experiment).params,
    output:
        layout.numbered_params(OUT, "{experiment}", "{epoch}"),
    log:
        f"{OUT}/logs/link_numbered_params/{{experiment}}/{{epoch}}.log",
    wildcard_constraints:
        epoch=r"\d{4}",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    script:
        "../../scripts/link_numbered_params.py"
