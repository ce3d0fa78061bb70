# Downloads run where Snakemake runs (on a cluster: the login node; compute nodes often have no
# internet), and so does the tiny synthetic archive.
localrules:
    synthesize_archive,
    download_archive,


rule synthesize_archive:
    output:
        layout.synthetic_archive(OUT, "{dataset}"),
    log:
        f"{OUT}/logs/synthesize_archive/{{dataset}}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        options=synthetic_options,
    script:
        "../../scripts/synthesize_archive.py"


rule download_archive:
    input:
        source=local_archive_source,
    output:
        layout.downloaded_archive(OUT, "{dataset}", "{archive}"),
    log:
        f"{OUT}/logs/download_archive/{{dataset}}/{{archive}}.log",
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=200,
        runtime=30,
    params:
        source=lambda wildcards: canonical(dataset_config(wildcards)),
        download=canonical(config["download"]),
    script:
        "../../scripts/download_archive.py"


rule unpack_arrays:
    input:
        archive=archive_path,
    output:
        train=layout.split_arrays(OUT, "{dataset}", "train"),
        test=layout.split_arrays(OUT, "{dataset}", "test"),
    log:
        f"{OUT}/logs/unpack_arrays/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/unpack_arrays/{{dataset}}.tsv"
    group:
        "data_chain"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/unpack_arrays.py"


rule export_images:
    input:
        arrays=layout.split_arrays(OUT, "{dataset}", "{split}"),
    output:
        images=directory(layout.image_folder(OUT, "{dataset}", "{split}")),
        lst=layout.image_list(OUT, "{dataset}", "{split}"),
    log:
        f"{OUT}/logs/export_images/{{dataset}}/{{split}}.log",
    benchmark:
        f"{OUT}/benchmarks/export_images/{{dataset}}/{{split}}.tsv"
    # The training split's export and packing are the data chain's critical path. On two cores: the
    # small test export first (it wants both cores, which are free only now), then the training
    # split's, then both packs side by side (the training split's first) with the mean image.
    priority: lambda wildcards: 2 if wildcards.split == "test" else 1
    group:
        "data_chain"
    conda:
        "../../envs/data.yaml"
    threads: 2  # PNG encoding in 2 threads, files written by one
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/export_images.py"


rule pack_records:
    input:
        images=layout.image_folder(OUT, "{dataset}", "{split}"),
        lst=layout.image_list(OUT, "{dataset}", "{split}"),
    output:
        rec=layout.record_file(OUT, "{dataset}", "{split}", "rec"),
        idx=layout.record_file(OUT, "{dataset}", "{split}", "idx"),
    log:
        f"{OUT}/logs/pack_records/{{dataset}}/{{split}}.log",
    benchmark:
        f"{OUT}/benchmarks/pack_records/{{dataset}}/{{split}}.tsv"
    priority: lambda wildcards: 1 if wildcards.split == "train" else 0  # see export_images
    group:
        "data_chain"
    conda:
        "../../envs/data.yaml"
    threads: 1  # im2rec --num-thread 1 packs PNGs faster than 2 (pass-through: no decoding)
    resources:
        mem_mb=1500,
        runtime=10,
    script:
        "../../scripts/pack_records.py"


rule mean_image:
    input:
        arrays=layout.split_arrays(OUT, "{dataset}", "train"),
    output:
        layout.mean_image(OUT, "{dataset}", "{height}", "{width}"),
    log:
        f"{OUT}/logs/mean_image/{{dataset}}/{{height}}x{{width}}.log",
    benchmark:
        f"{OUT}/benchmarks/mean_image/{{dataset}}/{{height}}x{{width}}.tsv"
    wildcard_constraints:
        height=r"\d+",
        width=r"\d+",
    group:
        "data_chain"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../../scripts/mean_image.py"


rule whitening_filters:
    input:
        arrays=layout.split_arrays(OUT, "{dataset}", "train"),
    output:
        layout.whitening_filters(OUT, "{dataset}", "{size}"),
    log:
        f"{OUT}/logs/whitening_filters/{{dataset}}/{{size}}x{{size}}.log",
    benchmark:
        f"{OUT}/benchmarks/whitening_filters/{{dataset}}/{{size}}x{{size}}.tsv"
    wildcard_constraints:
        size=r"\d+",
    group:
        "data_chain"
    conda:
        "../../envs/data.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../../scripts/whitening_filters.py"
