"""cifar-repro's shared code: the typed functions the rules' scripts call and the tests import.

Data chain: download, archive, synthetic, images, records, mean. Training: training (the loop),
checkpoints, metrics, devices, networks. Results: figures, samples, tables, report. Plumbing:
layout (where every experiment file lives), rule (running a script under Snakemake), atomic,
errors.
"""
