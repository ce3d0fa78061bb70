"""Rule release_model: a run's final symbol and parameters, as hard links, for the runs that start
from it."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.atomic import hard_link

    for part in ("symbol", "params"):
        hard_link(snakemake.input[part], snakemake.output[part])
        log.info("%s -> %s (hard link)", snakemake.output[part], snakemake.input[part])
