localrules:
    download_pretrained,


rule download_pretrained:
    input:
        script=entry_script("download.py"),
    output:
        f"{OUT}/pretrained/{{model}}/{{file}}",
    log:
        f"{OUT}/logs/download_pretrained/{{model}}/{{file}}.log",
    conda:
        "../../envs/data.yaml"
    params:
        url=lambda wildcards: pretrained_source(wildcards)["url"],
        md5=lambda wildcards: pretrained_source(wildcards).get("md5", ""),
        timeout=config["download"]["timeout_seconds"],
        max_bytes=config["download"]["max_bytes"],
    shell:
        "python {input.script} --url {params.url:q} --md5 {params.md5:q} --output {output}"
        " --timeout {params.timeout} --max-bytes {params.max_bytes} --log {log}"


rule train:
    input:
        unpack(training_inputs),
    output:
        **experiment_files("{experiment}"),
    log:
        f"{OUT}/experiments/{{experiment}}/train.log",
    benchmark:
        f"{OUT}/benchmarks/train/{{experiment}}.tsv"
    conda:
        "../../envs/train.yaml"
    threads: 2
    resources:
        gpu=lambda wildcards: experiment_config(wildcards)["gpus"],
    params:
        experiment=lambda wildcards: json.dumps(
            experiment_config(wildcards), sort_keys=True
        ),
        optional=optional_training_args,
        out_dir=lambda wildcards: f"{OUT}/experiments/{wildcards.experiment}",
        checkpoints=lambda wildcards: f"{OUT}/checkpoints/{wildcards.experiment}",
        gpu_ids=json.dumps(config["gpu_ids"]),
        lock_dir=config["gpu_lock_dir"],
    shell:
        "OMP_NUM_THREADS={threads} python {input.script} --name {wildcards.experiment}"
        " --experiment-json {params.experiment:q}"
        " --train-rec {input.train_rec} --train-idx {input.train_idx}"
        " --val-rec {input.val_rec} --val-idx {input.val_idx} {params.optional}"
        " --out-dir {params.out_dir} --checkpoint-dir {params.checkpoints}"
        " --gpus {resources.gpu} --gpu-ids {params.gpu_ids:q} --lock-dir {params.lock_dir:q} --log {log}"
