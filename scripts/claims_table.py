"""Rule claims_table: each of the seeds' claims against the experiments' seeds, with a verdict."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.claims import build_claims

    table = build_claims(
        snakemake.params.claims,
        snakemake.params.experiment_seeds,
        list(snakemake.input.metrics),
        dict(snakemake.output.items()),
    )
    for row in table.itertuples():
        log.info("%s: %s (%s)", row.claim, row.verdict, row.measured)
