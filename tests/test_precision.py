"""The precision a run trains in: the decision (from CPU flags, the devices, DNNL_MAX_CPU_ISA and
Linux's answer to the AMX request), its errors, and the ISA inference against what oneDNN itself
prints on this machine."""

import errno
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from cifar_repro import networks
from cifar_repro.errors import InputError
from cifar_repro.precision import (
    AMX_ISA,
    AVX512_CORE_FLAGS,
    EMULATION_VARIABLE,
    ISA_DESCRIPTIONS,
    ISA_FLAGS,
    ISA_VARIABLE,
    Cpu,
    choose_precision,
    effective_isa,
    this_cpu,
)

SAPPHIRE_RAPIDS = Cpu("Intel(R) Xeon(R) Platinum 8480+", frozenset(ISA_FLAGS[AMX_ISA] | {"avx2", "avx"}))
CASCADE_LAKE = Cpu(
    "Intel(R) Xeon(R) Gold 6248", frozenset(AVX512_CORE_FLAGS | {"avx512_vnni", "avx2", "avx"})
)


def granted() -> int:
    return 0


def refused() -> int:
    return errno.EOPNOTSUPP


def never_asked() -> int:
    raise AssertionError("asked Linux for AMX where the decision needs no AMX")


def test_fp32_is_left_alone_and_never_asks_for_amx():
    environ = {}
    chosen = choose_precision("fp32", None, SAPPHIRE_RAPIDS, environ, never_asked)
    assert (chosen.used, chosen.isa) == ("fp32", "avx512_core_bf16")  # oneDNN 2.4 keeps AMX opt-in
    assert environ == {}


def test_bf16_on_amx_raises_onednns_ceiling_to_amx():
    environ = {}
    chosen = choose_precision("bf16", None, SAPPHIRE_RAPIDS, environ, granted)
    assert (chosen.asked, chosen.used, chosen.isa) == ("bf16", "bf16", AMX_ISA)
    assert environ == {ISA_VARIABLE: "AVX512_CORE_AMX"}
    assert chosen.reason.startswith("bf16 on avx512_core_amx")
    assert choose_precision("auto", None, SAPPHIRE_RAPIDS, {}, granted).used == "bf16"


@pytest.mark.parametrize(
    "cpu, gpus, environ, permission, blocker",
    [
        (CASCADE_LAKE, None, {}, never_asked, "this CPU (Intel(R) Xeon(R) Gold 6248) has no AMX"),
        (
            SAPPHIRE_RAPIDS,
            "2 GPUs: 0, 1",
            {},
            never_asked,
            "the run trains on 2 GPUs: 0, 1, and MXNet 1.9's bf16",
        ),
        (
            SAPPHIRE_RAPIDS,
            None,
            {ISA_VARIABLE: "AVX512_CORE"},
            never_asked,
            "DNNL_MAX_CPU_ISA=AVX512_CORE keeps",
        ),
        (
            SAPPHIRE_RAPIDS,
            None,
            {},
            refused,
            "refused AMX tile data: arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE",
        ),
    ],
)
def test_bf16_without_amx_stops_naming_why_and_auto_picks_fp32(cpu, gpus, environ, permission, blocker):
    with pytest.raises(InputError) as raised:
        choose_precision("bf16", gpus, cpu, dict(environ), permission)
    assert blocker in str(raised.value)
    assert "Set the experiment's precision to fp32, or to auto" in str(raised.value)
    chosen = choose_precision("auto", gpus, cpu, dict(environ), permission)
    assert chosen.used == "fp32" and blocker in chosen.reason
    assert chosen.reason.startswith("auto chose fp32 on ")


def test_a_refusal_names_the_kernel_and_the_errno():
    with pytest.raises(
        InputError, match=rf"Linux {os.uname().release} refused .* errno 95 \(Operation not supp"
    ):
        choose_precision("bf16", None, SAPPHIRE_RAPIDS, {}, refused)


def test_the_isa_follows_the_ceiling():
    assert effective_isa(SAPPHIRE_RAPIDS.flags, "AVX512_CORE_AMX") == AMX_ISA
    assert effective_isa(SAPPHIRE_RAPIDS.flags, "ALL") == AMX_ISA
    assert effective_isa(SAPPHIRE_RAPIDS.flags, "avx2") == "avx2"
    assert effective_isa(CASCADE_LAKE.flags, "AVX512_CORE_AMX") == "avx512_core_vnni"
    with pytest.raises(InputError, match="DNNL_MAX_CPU_ISA=AVX9: not one of oneDNN 2.4's ISAs"):
        effective_isa(CASCADE_LAKE.flags, "AVX9")


def onednn_isa(ceiling: str | None) -> str:
    """What oneDNN prints as its ISA (DNNL_VERBOSE) in a fresh process under DNNL_MAX_CPU_ISA=ceiling."""
    environ = {key: value for key, value in os.environ.items() if key != ISA_VARIABLE}
    environ |= {"DNNL_VERBOSE": "1", "OMP_NUM_THREADS": "1"} | ({ISA_VARIABLE: ceiling} if ceiling else {})
    probe = (
        "import mxnet as mx; x = mx.nd.ones((1, 3, 8, 8)); w = mx.nd.ones((4, 3, 3, 3)); "
        "mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=4, no_bias=True).wait_to_read()"
    )
    output = subprocess.run(
        [sys.executable, "-c", probe], env=environ, capture_output=True, text=True, check=True
    ).stdout
    return next(line.split("isa:", 1)[1] for line in output.splitlines() if "info,cpu,isa:" in line)


@pytest.mark.parametrize("ceiling", [None, "AVX512_CORE", "AVX2", "ALL"])
def test_the_inferred_isa_is_the_one_onednn_reports_on_this_machine(ceiling):
    if ceiling == "AVX512_CORE" and not this_cpu().flags >= AVX512_CORE_FLAGS:
        pytest.skip("this CPU has no AVX-512")
    assert onednn_isa(ceiling) == ISA_DESCRIPTIONS[effective_isa(this_cpu().flags, ceiling)]


def test_the_emulation_switch_lets_bf16_train_without_amx_but_never_on_gpus():
    environ = {EMULATION_VARIABLE: "1"}
    chosen = choose_precision("bf16", None, CASCADE_LAKE, environ, never_asked)
    assert (chosen.used, chosen.isa) == ("bf16", "avx512_core_vnni")
    assert chosen.reason.startswith("bf16 emulated on avx512_core_vnni (CIFAR_REPRO_BF16_WITHOUT_AMX=1)")
    assert choose_precision("auto", None, CASCADE_LAKE, dict(environ), never_asked).used == "fp32"
    with pytest.raises(InputError, match="trains on 1 GPU"):
        choose_precision("bf16", "1 GPU", CASCADE_LAKE, dict(environ), never_asked)


@pytest.mark.parametrize(
    "name, classes, options, size",
    [("resnet", 10, {"num_layers": 8}, 28), ("quick", 10, {}, 32), ("resnext", 10, {"num_layers": 50}, 32)],
)
def test_every_network_trains_a_bf16_step_with_float32_parameters(name, classes, options, size):
    symbol = networks.in_bfloat16(networks.build(name, classes, **options))
    module = mx.mod.Module(symbol, context=[mx.cpu(0), mx.cpu(1)])  # data parallel, as GPU stand-ins
    module.bind([("data", (4, 3, size, size))], [("softmax_label", (4,))])
    mx.random.seed(0)
    module.init_params(mx.init.Xavier())
    module.init_optimizer(optimizer="nag", optimizer_params={"learning_rate": 0.01, "momentum": 0.9})
    batch = mx.io.DataBatch([mx.nd.random.uniform(shape=(4, 3, size, size))], [mx.nd.array([0, 1, 2, 3])])
    module.forward_backward(batch)
    module.update()
    assert np.isfinite(module.get_outputs()[0].asnumpy()).all()
    arg, aux = module.get_params()
    assert {value.dtype for value in [*arg.values(), *aux.values()]} == {np.float32}
    internals = json.loads(symbol.tojson(remove_amp_cast=False))["nodes"]
    assert any(node["op"] == "amp_cast" for node in internals)


def test_the_inception_net_converts_to_bf16_and_its_rrelu_stays_float32():
    # its training does not run at all in MXNet 1.9.1 (rrelu in training mode crashes: apache/mxnet#14447)
    symbol = networks.in_bfloat16(networks.build("inception_rrelu", 100))
    module = mx.mod.Module(symbol, context=mx.cpu())
    module.bind([("data", (2, 3, 28, 28))], [("softmax_label", (2,))], for_training=False)
    module.init_params(mx.init.Xavier())
    module.forward(mx.io.DataBatch([mx.nd.random.uniform(shape=(2, 3, 28, 28))]), is_train=False)
    assert np.isfinite(module.get_outputs()[0].asnumpy()).all()
