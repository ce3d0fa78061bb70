"""Benchmark (not a test): what does bf16 buy over float32, network by network, on this CPU?

For each network, training samples/s in float32 (the baseline) and in bf16 (networks.in_bfloat16,
the training loop's conversion), side by side: 3 rounds alternating fp32 and bf16, each measurement
in a fresh process (oneDNN reads its ISA once per process) that sets its precision up as a training
job does (precision.choose_precision), times whole steps (forward, backward, update) of random
batches after 2 warm-up steps, and reports its images/s; the table gives the medians. Achieved
GFLOP/s count 6 FLOP per multiply-add of the convolutions and fully connected layers (forward 2,
backward 4); the AMX peak is cores x clock x 1024 bf16 FLOP per cycle and core (Intel: 1,024 bf16
operations per cycle per core on 4th-generation Xeon), the float32 peak cores x clock x 64 (two
AVX-512 FMA units). A second pass runs one bf16 step under DNNL_VERBOSE=1 and lists the kernels
that were not AMX.

Where the CPU has no AMX, bf16 runs on oneDNN's emulation (CIFAR_REPRO_BF16_WITHOUT_AMX=1), which
is what a bf16 run there would cost; the table says so.
Target: bf16 at least 2.0x float32 on the quick net and on ResNet-20.

usage: PYTHONPATH=scripts python scripts/benchmarks/precision.py [--rounds 3] [--threads 2]
"""

import argparse
import ctypes
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter

from cifar_repro.precision import AMX_ISA, EMULATION_VARIABLE, effective_isa, this_cpu

NETWORKS = {  # name: (network, options, crop, batch)
    "resnet-20": ("resnet", {"num_layers": 20}, 28, 128),
    "quick": ("quick", {}, 32, 128),
    "resnext-50 (32x4d, 32x32)": ("resnext", {"num_layers": 50}, 32, 32),
}
SKIPPED = {"inception_rrelu": "its rrelu does not train in MXNet 1.9.1 (apache/mxnet#14447), in fp32 either"}
TARGET = 2.0
AMX_BF16_FLOP_PER_CYCLE = 1024
AVX512_FP32_FLOP_PER_CYCLE = 64
MEASURE_SECONDS = 6.0


def child(network: str, precision: str, census: bool) -> None:
    """One measurement, in this fresh process: print its figures as one JSON line."""
    from cifar_repro.precision import choose_precision

    chosen = choose_precision(precision, None)  # AMX on, before oneDNN's first primitive
    import mxnet as mx

    from cifar_repro import networks

    name, options, crop, batch = NETWORKS[network]
    symbol = networks.build(name, 10, **options)
    if chosen.used == "bf16":
        symbol = networks.in_bfloat16(symbol)
    module = mx.mod.Module(symbol, context=mx.cpu())
    module.bind([("data", (batch, 3, crop, crop))], [("softmax_label", (batch,))])
    mx.random.seed(0)
    module.init_params(mx.init.Xavier())
    module.init_optimizer(optimizer="nag", optimizer_params={"learning_rate": 0.01, "momentum": 0.9})
    data = mx.io.DataBatch([mx.nd.random.uniform(shape=(batch, 3, crop, crop))], [mx.nd.zeros((batch,))])

    def step() -> None:
        module.forward_backward(data)
        module.update()
        mx.nd.waitall()

    for _ in range(2):
        step()
    if census:  # the step's kernels, between two markers in oneDNN's verbose output on fd 1
        flush_c_stdout = functools.partial(ctypes.CDLL(None).fflush, None)  # oneDNN prints through C
        flush_c_stdout()
        print("CENSUS-BEGIN", flush=True)
        step()
        flush_c_stdout()
        print("CENSUS-END", flush=True)
        return
    steps, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < MEASURE_SECONDS:
        step()
        steps += 1
    macs = multiply_adds(symbol, batch, crop)
    print(json.dumps({"images_per_second": steps * batch / elapsed, "macs_per_image": macs / batch,
                      "used": chosen.used, "isa": chosen.isa}))  # fmt: skip


def multiply_adds(symbol, batch: int, crop: int) -> int:
    """Forward multiply-adds of the convolutions and fully connected layers, for a batch."""
    internals = symbol.get_internals()
    shapes = dict(
        zip(internals.list_outputs(), internals.infer_shape(data=(batch, 3, crop, crop))[1], strict=True)
    )
    total = 0
    for node in json.loads(symbol.tojson())["nodes"]:
        attrs = node.get("attrs", {})
        if node["op"] == "Convolution":
            out = shapes[f"{node['name']}_output"]
            weight = shapes[f"{node['name']}_weight"]
            total += out[0] * out[2] * out[3] * weight[0] * weight[1] * weight[2] * weight[3]
        elif node["op"] == "FullyConnected":
            total += batch * int(attrs["num_hidden"]) * shapes[f"{node['name']}_weight"][1]
    return total


def measure(network: str, precision: str, threads: int, census: bool = False) -> dict | list[str]:
    environ = os.environ | {"OMP_NUM_THREADS": str(threads), EMULATION_VARIABLE: "1"}
    if census:
        environ["DNNL_VERBOSE"] = "1"
    command = [sys.executable, __file__, "--child", network, precision] + (["--census"] if census else [])
    result = subprocess.run(command, env=environ, capture_output=True, text=True, check=True)
    if census:
        lines = result.stdout.split("CENSUS-BEGIN", 1)[1].split("CENSUS-END", 1)[0].splitlines()
        return [line for line in lines if line.startswith("dnnl_verbose,exec,")]
    return json.loads(result.stdout.strip().splitlines()[-1])


def not_amx(lines: list[str]) -> Counter:
    """Compute primitives (convolution, inner product) and batch norms of a step that ran on a kernel
    other than AMX, counted by (primitive, kernel)."""
    kernels = Counter()
    for line in lines:
        fields = line.split(",")
        primitive, kernel = fields[3], fields[4]
        if primitive in ("convolution", "inner_product", "batch_normalization") and "amx" not in kernel:
            kernels[(primitive, kernel)] += 1
    return kernels


def cpu_ghz() -> float:
    """The clock /proc/cpuinfo states (a virtual machine may hide the turbo clock)."""
    with open("/proc/cpuinfo") as cpuinfo:
        mhz = [float(line.split(":")[1]) for line in cpuinfo if line.startswith("cpu MHz")]
    return mhz[0] / 1000 if mhz else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--census", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, census=args.census)
        return 0
    cpu = this_cpu()
    has_amx = effective_isa(cpu.flags, AMX_ISA) == AMX_ISA
    ghz, cores = cpu_ghz(), args.threads
    amx_peak, fp32_peak = (
        cores * ghz * rate for rate in (AMX_BF16_FLOP_PER_CYCLE, AVX512_FP32_FLOP_PER_CYCLE)
    )
    amx = "yes" if has_amx else "no (bf16 below is emulated)"
    print(f"{cpu.model}, {cores} threads at {ghz:.2f} GHz (/proc/cpuinfo); fp32 runs on oneDNN's "
          f"{effective_isa(cpu.flags, None)}; AMX: {amx}")  # fmt: skip
    absent = "" if has_amx else ", not on this CPU"
    print(f"peaks: fp32 AVX-512 {fp32_peak:.0f} GFLOP/s (64 FLOP/cycle/core), bf16 AMX {amx_peak:.0f} "
          f"GFLOP/s ({AMX_BF16_FLOP_PER_CYCLE} FLOP/cycle/core){absent}")  # fmt: skip
    header = f"{'network':<27} {'fp32 img/s (rounds)':<26} {'bf16 img/s (rounds)':<26} {'bf16/fp32':>9}"
    print(header + "  GFLOP/s fp32 (% peak) | bf16 (% AMX peak)")
    for network in NETWORKS:
        runs = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            for precision in runs:
                runs[precision].append(measure(network, precision, args.threads))
        medians = {p: statistics.median(r["images_per_second"] for r in rs) for p, rs in runs.items()}
        flops = 6 * runs["fp32"][0]["macs_per_image"] / 1e9
        shown = {
            p: f"{medians[p]:.0f} (" + ", ".join(f"{r['images_per_second']:.0f}" for r in rs) + ")"
            for p, rs in runs.items()
        }
        ratio = medians["bf16"] / medians["fp32"]
        print(f"{network:<27} {shown['fp32']:<26} {shown['bf16']:<26} {ratio:>8.2f}x"
              f"  {medians['fp32'] * flops:.0f} ({medians['fp32'] * flops / fp32_peak:.0%})"
              f" | {medians['bf16'] * flops:.0f} ({medians['bf16'] * flops / amx_peak:.1%})")  # fmt: skip
        off_amx = not_amx(measure(network, "bf16", args.threads, census=True))
        listed = ", ".join(
            f"{primitive} {kernel} x{count}" for (primitive, kernel), count in off_amx.most_common()
        )
        print(f"{'':<27} bf16 kernels not on AMX: {listed or 'none'}")
    for network, reason in SKIPPED.items():
        print(f"{network:<27} not measured: {reason}")
    verdict = "" if has_amx else " (not measurable here: this CPU has no AMX, so bf16 is emulated)"
    print(f"target: bf16 >= {TARGET}x fp32 on quick and resnet-20{verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
