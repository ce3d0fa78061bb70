"""Rule download_pretrained: a pretrained model's symbol or params file (MD5-checked when given)."""

from cifar_repro.rule import rule_log

with rule_log(snakemake):
    from cifar_repro.download import fetch

    source, download = snakemake.params.source, snakemake.params.download
    fetch(
        source["url"],
        snakemake.output[0],
        source.get("md5", ""),
        download["timeout_seconds"],
        download["max_bytes"],
    )
