localrules:
    synthesize_archive,
    download_archive,


rule synthesize_archive:
    input:
        script=entry_script("synthetic_cifar.py"),
    output:
        f"{OUT}/synthetic/{{dataset}}.tar.gz",
    log:
        f"{OUT}/logs/synthesize_archive/{{dataset}}.log",
    conda:
        "../../envs/data.yaml"
    params:
        options=synthetic_options,
    shell:
        "python {input.script} --dataset {wildcards.dataset} --output {output}"
        " --train-per-class {params.options[train_per_class]}"
        " --test-per-class {params.options[test_per_class]}"
        " --seed {params.options[seed]} --noise {params.options[noise]} --log {log}"


rule download_archive:
    input:
        source=local_archive_source,
        script=entry_script("download.py"),
    output:
        f"{OUT}/{{dataset}}/download/{{archive}}",
    log:
        f"{OUT}/logs/download_archive/{{dataset}}/{{archive}}.log",
    conda:
        "../../envs/data.yaml"
    params:
        source=dataset_config,
        timeout=config["download"]["timeout_seconds"],
        max_bytes=config["download"]["max_bytes"],
    shell:
        "python {input.script} --url {params.source[url]:q} --md5 {params.source[md5]:q}"
        " --output {output} --timeout {params.timeout} --max-bytes {params.max_bytes} --log {log}"


rule unpack_arrays:
    input:
        archive=archive_path,
        script=entry_script("cifar_archive.py"),
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
        "python {input.script} --dataset {wildcards.dataset} --archive {input.archive}"
        " --train {output.train} --test {output.test} --log {log}"


rule export_images:
    input:
        arrays=f"{OUT}/{{dataset}}/arrays/{{split}}.npz",
        script=entry_script("export_images.py"),
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
        "python {input.script} --arrays {input.arrays} --images {output.images}"
        " --lst {output.lst} --log {log}"


rule pack_records:
    input:
        images=f"{OUT}/{{dataset}}/images/{{split}}",
        lst=f"{OUT}/{{dataset}}/images/{{split}}.lst",
        script=entry_script("pack_records.py"),
    output:
        rec=f"{OUT}/{{dataset}}/rec/{{split}}.rec",
        idx=f"{OUT}/{{dataset}}/rec/{{split}}.idx",
    log:
        f"{OUT}/logs/pack_records/{{dataset}}/{{split}}.log",
    benchmark:
        f"{OUT}/benchmarks/pack_records/{{dataset}}/{{split}}.tsv"
    conda:
        "../../envs/data.yaml"
    threads: 2
    shell:
        "python {input.script} --lst {input.lst} --images {input.images}"
        " --rec {output.rec} --idx {output.idx} --threads {threads} --log {log}"


rule mean_image:
    input:
        arrays=f"{OUT}/{{dataset}}/arrays/train.npz",
        script=entry_script("mean_image.py"),
    output:
        f"{OUT}/{{dataset}}/mean_{{height}}x{{width}}.bin",
    log:
        f"{OUT}/logs/mean_image/{{dataset}}/{{height}}x{{width}}.log",
    benchmark:
        f"{OUT}/benchmarks/mean_image/{{dataset}}/{{height}}x{{width}}.tsv"
    wildcard_constraints:
        height=r"\d+",
        width=r"\d+",
    conda:
        "../../envs/data.yaml"
    shell:
        "python {input.script} --arrays {input.arrays} --height {wildcards.height}"
        " --width {wildcards.width} --output {output} --log {log}"
