localrules:
    download_pretrained,
    link_numbered_params,
    release_model,


rule download_pretrained:
    output:
        layout.pretrained_file(OUT, "{model}", "{file}"),
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
        **run_outputs("{run}"),
    log:
        layout.training_log(OUT, "{run}"),
    benchmark:
        f"{OUT}/benchmarks/train/{{run}}.tsv"
    retries: train_retries()
    conda:
        training_env
    # a GPU job needs a few cores to decode and augment images (profiles raise it: set-threads)
    threads: 2
    resources:
        gpu=lambda wildcards: job_gpus(run_config(wildcards)),
        nodes=training_nodes,
        mpi=lambda wildcards: srun_steps(wildcards).get("mpi"),
        tasks=lambda wildcards: srun_steps(wildcards).get("tasks"),
        tasks_per_gpu=lambda wildcards: srun_steps(wildcards).get("tasks_per_gpu"),
        mem_mb=16000,
        runtime=training_minutes,
    params:
        # what the run's results depend on: a new key left at its neutral default retrains nothing
        settings=lambda wildcards: canonical(training_settings(run_config(wildcards))),
        checkpoint_dir=lambda wildcards: layout.checkpoint_dir(OUT, wildcards.run),
        gpu_ids=config["gpu_ids"],
        lock_dir=config["gpu_lock_dir"],
        allow_cpu_fallback=config["allow_cpu_fallback"],
    script:
        "../../scripts/train.py"


# mx.model.load_checkpoint(prefix, epoch) reads <prefix>-<epoch:04d>.params: the final parameters
# under that name too, as a hard link (no copy).
rule link_numbered_params:
    input:
        lambda wildcards: layout.run_files(OUT, wildcards.run).params,
    output:
        layout.numbered_params(OUT, "{run}", "{epoch}"),
    log:
        f"{OUT}/logs/link_numbered_params/{{run}}/{{epoch}}.log",
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


# A run's final model as the runs that start from it read it (see final_model_files).
rule release_model:
    input:
        symbol=lambda wildcards: layout.run_files(OUT, wildcards.run).symbol,
        params=lambda wildcards: layout.run_files(OUT, wildcards.run).params,
    output:
        **layout.released_model(OUT, "{run}"),
    log:
        f"{OUT}/logs/release_model/{{run}}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=100,
        runtime=1,
    script:
        "../../scripts/release_model.py"
