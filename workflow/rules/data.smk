localrules:
    synthesize_archive,
    download_archive,


rule synthesize_archive:
    output:
        f"{OUT}/synthetic/{{dataset}}.tar.gz",
    params:
        options=synthetic_options,
    log:
        f"{OUT}/logs/synthesize_archive/{{dataset}}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python {SCRIPTS}/synthetic_cifar.py --dataset {wildcards.dataset} --output {output}"
        " --train-per-class {params.options[train_per_class]}"
        " --test-per-class {params.options[test_per_class]}"
        " --seed {params.options[seed]} --noise {params.options[noise]} --log {log}"


rule download_archive:
    input:
        local_archive_source,
    output:
        f"{OUT}/{{dataset}}/download/{{archive}}",
    params:
        source=dataset_config,
        timeout=config["download"]["timeout_seconds"],
        max_bytes=config["download"]["max_bytes"],
    log:
        f"{OUT}/logs/download_archive/{{dataset}}/{{archive}}.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "python {SCRIPTS}/download.py --url {params.source[url]:q} --md5 {params.source[md5]:q}"
        " --output {output} --timeout {params.timeout} --max-bytes {params.max_bytes} --log {log}"


rule unpack_arrays:
    input:
        archive_path,
    output:
        train=f"{OUT}/{{dataset}}/arrays/train.npz",
        test=f"{OUT}/{{dataset}}/arrays/test.npz",
    log:
        f"{OUT}/logs/unpack_arrays/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/unpack_arrays/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "python {SCRIPTS}/cifar_archive.py --dataset {wildcards.dataset} --archive {input}"
        " --train {output.train} --test {output.test} --log {log}"


rule export_images:
    input:
        f"{OUT}/{{dataset}}/arrays/{{split}}.npz",
    output:
        images=directory(f"{OUT}/{{dataset}}/images/{{split}}"),
        lst=f"{OUT}/{{dataset}}/images/{{split}}.lst",
    log:
        f"{OUT}/logs/export_images/{{dataset}}/{{split}}.log",
    benchmark:
        f"{OUT}/benchmarks/export_images/{{dataset}}/{{split}}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "python {SCRIPTS}/export_images.py --arrays {input} --images {output.images}"
        " --lst {output.lst} --log {log}"


rule pack_records:
    input:
        images=f"{OUT}/{{dataset}}/images/{{split}}",
        lst=f"{OUT}/{{dataset}}/images/{{split}}.lst",
    output:
        rec=f"{OUT}/{{dataset}}/rec/{{split}}.rec",
        idx=f"{OUT}/{{dataset}}/rec/{{split}}.idx",
    threads: 2
    log:
        f"{OUT}/logs/pack_records/{{dataset}}/{{split}}.log",
    benchmark:
        f"{OUT}/benchmarks/pack_records/{{dataset}}/{{split}}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "python {SCRIPTS}/pack_records.py --lst {input.lst} --images {input.images}"
        " --rec {output.rec} --idx {output.idx} --threads {threads} --log {log}"


rule mean_image:
    input:
        f"{OUT}/{{dataset}}/arrays/train.npz",
    output:
        f"{OUT}/{{dataset}}/mean_{{height}}x{{width}}.bin",
    wildcard_constraints:
        height=r"\d+",
        width=r"\d+",
    log:
        f"{OUT}/logs/mean_image/{{dataset}}/{{height}}x{{width}}.log",
    benchmark:
        f"{OUT}/benchmarks/mean_image/{{dataset}}/{{height}}x{{width}}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "python {SCRIPTS}/mean_image.py --arrays {input} --height {wildcards.height}"
        " --width {wildcards.width} --output {output} --log {log}"
