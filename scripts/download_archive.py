"""Rule download_archive: a dataset archive, kept only if its MD5 is the configured one."""

from cifar_repro.rule import rule_log

with rule_log(snakemake):
    from cifar_repro.download import fetch

    source, download = snakemake.params.source, snakemake.params.download
    fetch(
        source["url"], snakemake.output[0], source["md5"], download["timeout_seconds"], download["max_bytes"]
    )
