"""The precision a run trains in (the experiment's `precision`): float32, or bfloat16 compute with
float32 master weights (MXNet's AMP), which pays only on Intel AMX.

- `fp32`, the seeds' precision: nothing changes.
- `bf16`: MXNet 1.9's bf16 AMP runs on CPUs only, and bf16 without AMX is slower than float32, so a
  bf16 run on GPUs, or on a CPU or in a process where AMX cannot run, stops before training, saying
  why and what to set instead.
- `auto`: bf16 where AMX runs, else fp32; it never stops, and says which it chose and why.

CIFAR_REPRO_BF16_WITHOUT_AMX=1 lets a bf16 run train on a CPU without AMX anyway, on oneDNN's bf16
emulation (2-4x slower than fp32 on AVX-512): it is how the tests cover the bf16 path on machines
without AMX, never a way to train faster.

Turning AMX on takes two steps in each process that trains, before oneDNN's first primitive (it
reads the variable once): the oneDNN 2.4.4 the wheel bundles uses AMX only when DNNL_MAX_CPU_ISA is
AVX512_CORE_AMX, and Linux lets a process use AMX tile data only once it has asked for it
(arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); oneDNN 2.4 does not ask, so without the
request its first AMX instruction kills the process (SIGILL).

oneDNN's Python-facing API is not exported by libmxnet, so the ISA its kernels use is inferred from
the CPU's flags and DNNL_MAX_CPU_ISA, as oneDNN chooses it (tests check the inference against what
DNNL_VERBOSE prints).
"""

import ctypes
import logging
import os
import platform
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import InputError

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "auto")
ISA_VARIABLE = "DNNL_MAX_CPU_ISA"
EMULATION_VARIABLE = "CIFAR_REPRO_BF16_WITHOUT_AMX"
AMX_ISA = "avx512_core_amx"

# oneDNN 2.4's CPU ISAs from the most capable down, each with the /proc/cpuinfo flags it needs
# (cpu/x64/cpu_isa_traits.hpp); AMX is opt-in: oneDNN uses it only when DNNL_MAX_CPU_ISA names it.
AVX512_CORE_FLAGS = {"avx512f", "avx512bw", "avx512vl", "avx512dq"}
ISA_FLAGS = {
    AMX_ISA: AVX512_CORE_FLAGS | {"avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"},
    "avx512_core_bf16": AVX512_CORE_FLAGS | {"avx512_vnni", "avx512_bf16"},
    "avx512_core_vnni": AVX512_CORE_FLAGS | {"avx512_vnni"},
    "avx512_core": AVX512_CORE_FLAGS,
    "avx2": {"avx2"},
    "avx": {"avx"},
    "sse41": {"sse4_1"},
}
ISAS = list(ISA_FLAGS)  # most capable first
DEFAULT_MAX_ISA = "avx512_core_bf16"  # oneDNN 2.4's ceiling unless DNNL_MAX_CPU_ISA raises it
# what DNNL_VERBOSE=1 prints for each (dnnl_verbose,info,cpu,isa:...)
ISA_DESCRIPTIONS = {
    AMX_ISA: "Intel AVX-512 with Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and "
    "8-bit integer support",
    "avx512_core_bf16": "Intel AVX-512 with Intel DL Boost and bfloat16 support",
    "avx512_core_vnni": "Intel AVX-512 with Intel DL Boost",
    "avx512_core": "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions",
    "avx2": "Intel AVX2",
    "avx": "Intel AVX",
    "sse41": "Intel SSE4.1",
}

# arch_prctl(2) on x86-64: ask Linux for permission to use AMX tile data (Linux 5.16 and later)
SYS_ARCH_PRCTL = 158
ARCH_REQ_XCOMP_PERM = 0x1023
XFEATURE_XTILEDATA = 18


@dataclass(frozen=True)
class Cpu:
    model: str
    flags: frozenset[str]


def this_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> Cpu:
    model, flags = platform.processor() or "unknown CPU", frozenset()
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = frozenset(value.split())
    return Cpu(model, flags)


def effective_isa(flags: frozenset[str], max_isa: str | None) -> str:
    """The ISA oneDNN's kernels use on a CPU with `flags` under DNNL_MAX_CPU_ISA=`max_isa` (None:
    unset), as oneDNN picks it: the most capable one the CPU has, at most the ceiling."""
    ceiling = (max_isa or DEFAULT_MAX_ISA).lower()
    ceiling = ISAS[0] if ceiling == "all" else ceiling
    if ceiling not in ISA_FLAGS:
        raise InputError(f"{ISA_VARIABLE}={max_isa}: not one of oneDNN 2.4's ISAs ({', '.join(ISAS)}, all)")
    allowed = ISAS[ISAS.index(ceiling) :]
    return next((isa for isa in allowed if ISA_FLAGS[isa] <= flags), "sse41")


def request_amx_permission() -> int:
    """Ask Linux for AMX tile data (once per process: later threads inherit it); 0, or the errno."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_ARCH_PRCTL, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0:
        return 0
    return ctypes.get_errno()


@dataclass(frozen=True)
class Precision:
    """What a run was asked to train in, what it trains in, on which oneDNN ISA, and why."""

    asked: str
    used: str  # fp32 or bf16
    isa: str
    reason: str

    def record(self) -> dict:
        return asdict(self)


def amx_blocker(
    cpu: Cpu,
    gpu_contexts: str | None,
    environ: Mapping[str, str],
    request_permission: Callable[[], int],
) -> str | None:
    """Why bf16 on AMX cannot run in this process (None: it can, and Linux has granted AMX)."""
    if gpu_contexts:
        return f"the run trains on {gpu_contexts}, and MXNet 1.9's bf16 AMP runs on CPUs only"
    if effective_isa(cpu.flags, AMX_ISA) != AMX_ISA:
        return f"this CPU ({cpu.model}) has no AMX (no amx_bf16 and amx_tile among its /proc/cpuinfo flags)"
    ceiling = environ.get(ISA_VARIABLE)
    if ceiling and effective_isa(cpu.flags, ceiling) != AMX_ISA:
        return f"{ISA_VARIABLE}={ceiling} keeps oneDNN below AMX"
    error = request_permission()
    if error:
        return (
            f"Linux {platform.release()} refused AMX tile data: arch_prctl(ARCH_REQ_XCOMP_PERM, "
            f"XFEATURE_XTILEDATA) failed with errno {error} ({os.strerror(error)})"
        )
    return None


def choose_precision(
    asked: str,
    gpu_contexts: str | None,
    cpu: Cpu | None = None,
    environ: dict = os.environ,
    request_permission: Callable[[], int] = request_amx_permission,
) -> Precision:
    """The run's precision, in a process about to train on `gpu_contexts` (a description; None for
    CPU contexts). For bf16 it raises oneDNN's ceiling to AMX in `environ` (this process's, before
    oneDNN's first primitive); a bf16 run that cannot have AMX stops here with InputError."""
    cpu = cpu or this_cpu()
    if asked == "fp32":
        isa = effective_isa(cpu.flags, environ.get(ISA_VARIABLE))
        return Precision(asked, "fp32", isa, f"fp32 as asked, on {isa}")
    blocker = amx_blocker(cpu, gpu_contexts, environ, request_permission)
    if blocker and asked == "bf16" and not gpu_contexts and environ.get(EMULATION_VARIABLE) == "1":
        isa = effective_isa(cpu.flags, environ.get(ISA_VARIABLE))
        return Precision(asked, "bf16", isa, f"bf16 emulated on {isa} ({EMULATION_VARIABLE}=1): {blocker}")
    if blocker and asked == "bf16":
        raise InputError(
            f"precision bf16: {blocker}. Set the experiment's precision to fp32, or to auto (bf16 where "
            "AMX runs, else fp32)"
        )
    if blocker:
        isa = effective_isa(cpu.flags, environ.get(ISA_VARIABLE))
        return Precision(asked, "fp32", isa, f"auto chose fp32 on {isa}: {blocker}")
    environ[ISA_VARIABLE] = AMX_ISA.upper()
    return Precision(asked, "bf16", AMX_ISA, f"bf16 on {AMX_ISA}, granted by Linux {platform.release()}")
