"""Rule synthesize_archive: a small learnable archive in the CIFAR layout (the demo's data)."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.synthetic import archive_members, write_archive

    dataset, options = snakemake.wildcards.dataset, snakemake.params.options
    members = archive_members(
        dataset, options["train_per_class"], options["test_per_class"], options["seed"], options["noise"]
    )
    md5 = write_archive(snakemake.output[0], members)
    log.info("%s: synthetic %s archive, MD5 %s", snakemake.output[0], dataset, md5)
