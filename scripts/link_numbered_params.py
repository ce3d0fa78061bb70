"""Rule link_numbered_params: the final parameters under the name mx.model.load_checkpoint reads."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.atomic import hard_link

    hard_link(snakemake.input[0], snakemake.output[0])
    log.info("%s -> %s (hard link)", snakemake.output[0], snakemake.input[0])
