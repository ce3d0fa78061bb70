#!/usr/bin/env bash
# Snakemake runs this inside the new train-cu112 env (--sdm conda). The dynamic loader reads
# LD_LIBRARY_PATH only when a process starts, so mxnet-cu112 finds the CUDA 11 libraries of NVIDIA's
# pip packages (site-packages/nvidia/*/lib) only if activation exports them: write an activate.d
# script, which `conda activate` (and Snakemake's `source activate`) runs.
set -euo pipefail
site_packages=$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
library_dirs=$(find "$site_packages/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib 2>/dev/null | sort | paste -sd:) || true
if [ -z "$library_dirs" ]; then
  echo "error: no nvidia/*/lib folders in $site_packages: the CUDA 11 pip packages did not install" >&2
  exit 1
fi
mkdir -p "$CONDA_PREFIX/etc/conda/activate.d"
echo "export LD_LIBRARY_PATH=\"$library_dirs\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\"" \
  > "$CONDA_PREFIX/etc/conda/activate.d/cifar-repro-cuda-libraries.sh"
