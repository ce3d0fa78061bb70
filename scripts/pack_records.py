"""Rule pack_records: one split's PNGs packed by MXNet's im2rec.py into an indexed .rec."""

from cifar_repro.rule import rule_log

with rule_log(snakemake) as log:
    from cifar_repro.records import pack

    inputs, outputs = snakemake.input, snakemake.output
    count = pack(inputs.lst, inputs.images, outputs.rec, outputs.idx, snakemake.threads)
    log.info("%s: %d records -> %s", inputs.lst, count, outputs.rec)
