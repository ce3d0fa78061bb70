"""Tests of the network symbols and of fine_tune, with real MXNet on the CPU."""

import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from conftest import REPO

from cifar_repro import networks


def output_shape(symbol, size):
    _, (shape,), _ = symbol.infer_shape(data=(1, 3, size, size))
    return shape


def argument_shapes(symbol, size=224):
    shapes, _, _ = symbol.infer_shape(data=(1, 3, size, size))
    return dict(zip(symbol.list_arguments(), shapes, strict=True))


def parameter_count(symbol, size=224):
    return sum(
        int(np.prod(shape))
        for name, shape in argument_shapes(symbol, size).items()
        if name not in ("data", "softmax_label")
    )


def nodes(symbol):
    return json.loads(symbol.tojson())["nodes"]


@pytest.fixture(scope="module")
def resnext101():
    return networks.resnext(1000, num_layers=101)


@pytest.mark.parametrize("size", [28, 32])
def test_resnext_101_classifies_small_cifar_crops(size):
    assert output_shape(networks.resnext(10, num_layers=101), size) == (1, 10)


@pytest.mark.parametrize("size", [28, 32])
def test_resnext_keeps_imagenet_stem_at_small_sizes(size):
    # 7x7/2 conv and 3x3/2 max pool: a quarter of the input side after the stem.
    internals = networks.resnext(10).get_internals()["pooling0_output"]
    assert output_shape(internals, size) == (1, 64, size // 4, size // 4)


@pytest.mark.parametrize("num_layers, low, high", [(101, 42e6, 45e6), (50, 24e6, 26e6)])
def test_resnext_parameter_count_matches_32x4d(num_layers, low, high):
    assert low < parameter_count(networks.resnext(1000, num_layers=num_layers)) < high


def test_resnext_uses_model_zoo_names(resnext101):
    arguments = set(resnext101.list_arguments())
    for name in [
        "data",
        "bn_data_gamma",
        "bn_data_beta",
        "conv0_weight",
        "bn0_gamma",
        "stage1_unit1_conv1_weight",
        "stage1_unit1_bn1_beta",
        "stage1_unit1_sc_weight",
        "stage1_unit1_sc_bn_gamma",
        "stage2_unit4_conv3_weight",
        "stage3_unit23_conv2_weight",
        "stage4_unit3_bn3_gamma",
        "fc1_weight",
        "fc1_bias",
        "softmax_label",
    ]:
        assert name in arguments, name
    assert "stage3_unit24_conv1_weight" not in arguments
    auxiliary = set(resnext101.list_auxiliary_states())
    assert {"bn_data_moving_mean", "stage4_unit1_sc_bn_moving_var"} <= auxiliary
    outputs = set(resnext101.get_internals().list_outputs())
    assert {"relu0_output", "pool1_output", "flatten0_output", "fc1_output"} <= outputs
    assert resnext101.list_outputs() == ["softmax_output"]


def test_resnext_names_do_not_depend_on_earlier_builds():
    first = networks.resnext(10, num_layers=50)
    networks.resnet_cifar(10, 20)
    assert networks.resnext(10, num_layers=50).tojson() == first.tojson()


def test_resnext_conv2_is_grouped(resnext101):
    conv2 = resnext101.get_internals()["stage3_unit5_conv2_output"]
    assert conv2.attr("num_group") == "32"
    shapes = argument_shapes(resnext101)
    # 32 groups of 4 (stage 1) and 32 (stage 4) input channels each.
    assert shapes["stage1_unit1_conv2_weight"] == (128, 4, 3, 3)
    assert shapes["stage4_unit1_conv2_weight"] == (1024, 32, 3, 3)
    assert shapes["stage1_unit1_conv1_weight"] == (128, 64, 1, 1)


def test_resnext_rejects_unknown_depth():
    with pytest.raises(ValueError, match=r"\[50, 101\]"):
        networks.resnext(10, num_layers=34)


@pytest.mark.parametrize("size", [28, 32])
def test_resnet_20_classifies_cifar_crops(size):
    assert output_shape(networks.resnet_cifar(10, 20), size) == (1, 10)


@pytest.mark.parametrize("num_layers, units", [(20, 3), (56, 9), (110, 18)])
def test_resnet_cifar_has_n_basic_units_per_stage(num_layers, units):
    arguments = set(networks.resnet_cifar(10, num_layers).list_arguments())
    for stage in (1, 2, 3):
        assert f"stage{stage}_unit{units}_conv2_weight" in arguments
        assert f"stage{stage}_unit{units + 1}_conv1_weight" not in arguments
        assert f"stage{stage}_unit1_conv3_weight" not in arguments


def test_resnet_cifar_widths_and_parameter_free_shortcuts():
    symbol = networks.resnet_cifar(10, 20)
    shapes = argument_shapes(symbol, 32)
    assert shapes["conv0_weight"] == (16, 3, 3, 3)
    assert shapes["stage2_unit1_conv1_weight"] == (32, 16, 3, 3)
    assert shapes["stage3_unit3_conv2_weight"] == (64, 64, 3, 3)
    assert shapes["fc1_weight"] == (10, 64)
    assert not any("_sc" in name for name in shapes)
    # He et al. 2015, table 6: ResNet-20 has 0.27M parameters.
    assert 0.26e6 < parameter_count(symbol, 32) < 0.28e6


@pytest.mark.parametrize("num_layers", [2, 21, 30, 0])
def test_resnet_cifar_rejects_depths_other_than_6n_plus_2(num_layers):
    with pytest.raises(ValueError, match="6n"):
        networks.resnet_cifar(10, num_layers)


def test_inception_rrelu_classifies_cifar_100():
    assert output_shape(networks.inception_rrelu(), 28) == (1, 100)


def test_inception_rrelu_uses_rrelu_after_every_conv():
    graph = nodes(networks.inception_rrelu())
    activations = [node for node in graph if node["op"] in ("LeakyReLU", "Activation")]
    convolutions = [node for node in graph if node["op"] == "Convolution"]
    # 8 InceptionFactoryA modules of 7 convs and 2 InceptionFactoryB modules of 5.
    assert len(convolutions) == 8 * 7 + 2 * 5
    assert len(activations) == len(convolutions)
    assert {node["attrs"]["act_type"] for node in activations} == {"rrelu"}


def test_inception_rrelu_has_notebook_channels():
    symbol = networks.inception_rrelu(100)
    internals = symbol.get_internals()
    # 3a: 64 + 64 + 96 + 32; 3c: 160 + 96 + 320 passed through; 5b: 352 + 320 + 224 + 128.
    assert output_shape(internals["ch_concat_3a_chconcat_output"], 28) == (1, 256, 28, 28)
    assert output_shape(internals["ch_concat_3c_chconcat_output"], 28) == (1, 576, 14, 14)
    assert output_shape(internals["ch_concat_5b_chconcat_output"], 28) == (1, 1024, 7, 7)
    assert argument_shapes(symbol, 28)["fc_weight"] == (100, 1024)
    assert "max_pool_5b_pool_output" in internals.list_outputs()


def test_quick_net_halves_the_resolution_in_each_of_three_blocks():
    symbol = networks.quick(10)
    assert output_shape(symbol, 32) == (1, 10)
    internals = symbol.get_internals()
    for block, (channels, size) in enumerate([(48, 16), (192, 8), (192, 4)], start=1):
        assert output_shape(internals[f"block{block}_relu2_output"], 32) == (1, channels, size, size)
    assert argument_shapes(symbol, 32)["fc1_weight"] == (10, 192)
    convolutions = [node for node in nodes(symbol) if node["op"] == "Convolution"]
    assert len(convolutions) == 7


def test_airbench_net_has_its_stem_blocks_and_scaled_bias_free_classifier():
    symbol = networks.airbench(10, widths=(32, 48, 64))
    assert output_shape(symbol, 32) == (1, 10)
    shapes = argument_shapes(symbol, 32)
    assert shapes["whiten_weight"] == (24, 3, 2, 2) and shapes["whiten_bias"] == (24,)
    assert shapes["fc_weight"] == (10, 64) and "fc_bias" not in shapes
    internals = symbol.get_internals()
    for block, (channels, size) in enumerate([(32, 15), (48, 7), (64, 3)], start=1):
        assert output_shape(internals[f"block{block}_gelu2_output"], 32) == (1, channels, size, size)
    norms = [node for node in nodes(symbol) if node["op"] == "BatchNorm"]
    assert len(norms) == 6 and all(
        (n["attrs"]["fix_gamma"], n["attrs"]["momentum"], n["attrs"]["eps"]) == ("True", "0.6", "1e-12")
        for n in norms
    )
    scale = next(node for node in nodes(symbol) if node["name"] == "logit_scale")
    assert float(scale["attrs"]["scalar"]) == pytest.approx(1 / 9)


def test_no_airbench_training_step_runs_a_reference_kernel_of_onednn():
    """A block whose input channels are no multiple of 16 (the 24 of the stem; 40 here) takes its
    data through a plain-layout copy, else its first batch norm's backward pass runs bnorm_ref."""
    probe = (
        "import sys; sys.path.insert(0, 'scripts'); import mxnet as mx, numpy as np\n"
        "from cifar_repro import networks\n"
        "module = mx.mod.Module(networks.airbench(10, widths=(40, 32, 32)), context=mx.cpu())\n"
        "module.bind(data_shapes=[('data', (16, 3, 32, 32))], label_shapes=[('softmax_label', (16,))])\n"
        "module.init_params(mx.init.Xavier()); module.init_optimizer(optimizer='nag')\n"
        "batch = mx.io.DataBatch([mx.nd.random.uniform(0, 255, (16, 3, 32, 32))], [mx.nd.zeros((16,))])\n"
        "module.forward_backward(batch); module.update(); mx.nd.waitall()\n"
    )
    environment = {**os.environ, "DNNL_VERBOSE": "1", "OMP_NUM_THREADS": "1"}
    output = subprocess.run(
        [sys.executable, "-c", probe], env=environment, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    kernels = [line.split(",")[4] for line in output.splitlines() if line.startswith("dnnl_verbose,exec")]
    assert kernels and not [kernel for kernel in kernels if "ref" in kernel]
    copies = [
        node["name"] for node in nodes(networks.airbench(10, widths=(40, 32, 32))) if "plain" in node["name"]
    ]
    assert copies == ["block1_plain_layout", "block2_plain_layout"]


def test_label_smoothing_moves_target_weight_onto_the_other_classes(pretrained_resnet):
    """The loss gradient at the logits is p - target: with zero logits p is uniform, and the
    smoothed target keeps 1 - alpha on the label and alpha / (classes - 1) on each other class."""
    symbol, arg_params, _ = pretrained_resnet
    smoothed, kept = networks.fine_tune(symbol, arg_params, 5, label_smoothing=0.2)
    executor = smoothed.simple_bind(mx.cpu(), data=(1, 3, 32, 32), grad_req="write")
    for name, array in executor.arg_dict.items():
        array[:] = kept.get(name, 0)
    executor.arg_dict["softmax_label"][:] = 3
    executor.forward(is_train=True)
    executor.backward()
    expected = np.full(5, 0.2 - 0.2 / 4)  # p - alpha / (classes - 1)
    expected[3] = 0.2 - 0.8
    np.testing.assert_allclose(executor.grad_dict["fc_bias"].asnumpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    "name, options, builder, arguments",
    [
        ("resnext", {"num_layers": 50}, networks.resnext, (10, 50)),
        ("resnet", {"num_layers": 20}, networks.resnet_cifar, (10, 20)),
        ("inception_rrelu", {}, networks.inception_rrelu, (10,)),
        ("quick", {}, networks.quick, (10,)),
        ("airbench", {"widths": (16, 32, 32)}, networks.airbench, (10, 0.0, (16, 32, 32))),
    ],
)
def test_build_dispatches_by_name(name, options, builder, arguments):
    assert networks.build(name, 10, **options).tojson() == builder(*arguments).tojson()


def test_build_rejects_unknown_name_listing_known_ones():
    with pytest.raises(ValueError, match="resnext.*inception_rrelu.*resnet"):
        networks.build("vgg", 10)


@pytest.fixture(scope="module")
def pretrained_resnet():
    """A CIFAR ResNet-20 with 10 classes, random weights and non-trivial batch-norm statistics."""
    symbol = networks.resnet_cifar(10, 20)
    module = mx.mod.Module(symbol, context=mx.cpu())
    module.bind(data_shapes=[("data", (2, 3, 32, 32))], label_shapes=[("softmax_label", (2,))])
    module.init_params(mx.init.Xavier())
    arg_params, aux_params = module.get_params()
    aux_params = {name: mx.nd.random.uniform(0.5, 1.5, value.shape) for name, value in aux_params.items()}
    return symbol, arg_params, aux_params


def test_fine_tune_replaces_classifier_and_keeps_features(pretrained_resnet):
    symbol, arg_params, _ = pretrained_resnet
    new_symbol, kept = networks.fine_tune(symbol, arg_params, 7, layer="flatten0")

    assert new_symbol.list_outputs() == ["softmax_output"]
    shapes = argument_shapes(new_symbol, 32)
    assert shapes["fc_weight"] == (7, 64)
    assert shapes["fc_bias"] == (7,)
    assert "fc1_weight" not in shapes
    assert set(kept) == set(arg_params) - {"fc1_weight", "fc1_bias"}
    for name, value in kept.items():
        np.testing.assert_array_equal(value.asnumpy(), arg_params[name].asnumpy())


def test_fine_tuned_network_runs_with_pretrained_params(pretrained_resnet):
    symbol, arg_params, aux_params = pretrained_resnet
    new_symbol, kept = networks.fine_tune(symbol, arg_params, 7)
    module = mx.mod.Module(new_symbol, context=mx.cpu())
    module.bind(
        data_shapes=[("data", (2, 3, 32, 32))], label_shapes=[("softmax_label", (2,))], for_training=False
    )
    module.init_params(mx.init.Xavier(), arg_params=kept, aux_params=aux_params, allow_missing=True)

    module.forward(mx.io.DataBatch([mx.nd.random.uniform(shape=(2, 3, 32, 32))]), is_train=False)
    probabilities = module.get_outputs()[0].asnumpy()

    assert probabilities.shape == (2, 7)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    loaded_args, loaded_aux = module.get_params()
    for name in ("conv0_weight", "stage3_unit3_conv2_weight"):
        np.testing.assert_array_equal(loaded_args[name].asnumpy(), arg_params[name].asnumpy())
    for name, value in aux_params.items():
        np.testing.assert_array_equal(loaded_aux[name].asnumpy(), value.asnumpy())


def classifier_named_fc():
    """A tiny pretrained network whose classifier is called `fc`, like the CIFAR-100 notebook's."""
    features = mx.sym.Flatten(
        mx.sym.Convolution(mx.sym.Variable("data"), num_filter=4, kernel=(3, 3), name="conv"), name="flatten0"
    )
    symbol = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(features, num_hidden=100, name="fc"), name="softmax")
    arg_params = {
        name: mx.nd.ones(shape)
        for name, shape in argument_shapes(symbol, 5).items()
        if name not in ("data", "softmax_label")
    }
    return symbol, arg_params


def test_fine_tune_drops_old_classifier_even_if_named_fc():
    new_symbol, kept = networks.fine_tune(*classifier_named_fc(), 3)

    assert set(kept) == {"conv_weight", "conv_bias"}
    assert argument_shapes(new_symbol, 5)["fc_weight"] == (3, 36)


def test_fine_tune_refuses_to_reuse_the_name_fc_below_the_new_classifier():
    with pytest.raises(ValueError, match="'fc'"):
        networks.fine_tune(*classifier_named_fc(), 3, layer="fc")


def test_fine_tune_rejects_unknown_layer_listing_available_ones(pretrained_resnet):
    symbol, arg_params, _ = pretrained_resnet
    with pytest.raises(ValueError, match="'pool5'.*flatten0"):
        networks.fine_tune(symbol, arg_params, 7, layer="pool5")
