"""Network definitions (MXNet symbols) for the CIFAR experiments.

Every network takes its input from a variable named `data` and ends in a SoftmaxOutput named
`softmax` (so its label is `softmax_label`). Layers are named explicitly instead of relying on
MXNet's automatic names, which depend on how many symbols were built before in the process.

- `resnext`: the ImageNet ResNeXt of MXNet's model zoo, layer for layer and name for name, so the
  published ImageNet weights load into it; global pooling lets it run on 28x28 or 32x32 crops.
- `resnet_cifar`: the CIFAR ResNet of He et al. 2015 ("Deep Residual Learning for Image
  Recognition", section 4.2).
- `inception_rrelu`: the Inception + BatchNorm + randomized-ReLU net of MXNet's CIFAR-100 notebook
  (example/notebooks/cifar-100.ipynb, MXNet v0.7.0).
- `quick`: a shallow, wide net for fast CIFAR-10 training on a CPU, after Keller Jordan's airbench
  (2024, "94% on CIFAR-10 in 3.29 seconds on a single GPU"), at 3/4 of its width with a plain stem.
- `airbench`: airbench94's net itself (whitening stem, GELU, 64/256/256), for its recipe.
- `fine_tune`: replace the classifier of a pretrained symbol with a new one.
"""

import json
from collections.abc import Callable

import mxnet as mx

from .whitening import STEM_SIZE

Symbol = mx.sym.Symbol

# Units per stage of the ImageNet ResNeXt depths the model zoo publishes.
RESNEXT_UNITS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
# Output channels of the stem and of each ResNeXt stage.
RESNEXT_STEM_FILTERS = 64
RESNEXT_STAGE_FILTERS = (256, 512, 1024, 2048)

# Output channels of each stage of the CIFAR ResNet.
RESNET_CIFAR_STAGE_FILTERS = (16, 32, 64)

# Output channels of the quick net's stem and of its three blocks: airbench's 64/256/256 at 3/4 width,
# which trains about 500 images/s on 2 CPU cores (full width: about 300), 17 to 18 epochs in 30 minutes.
QUICK_STEM_FILTERS = 32
QUICK_BLOCK_FILTERS = (48, 192, 192)

# airbench94's widths, batch norm (scale fixed at 1, running statistics 0.6 old + 0.4 batch, tiny
# eps) and logit scale; its first layer, whose 2x2 filters the whitening artefact can provide.
AIRBENCH_WIDTHS = (64, 256, 256)
AIRBENCH_BATCH_NORM = {"fix_gamma": True, "momentum": 0.6, "eps": 1e-12}
AIRBENCH_LOGIT_SCALE = 1 / 9
WHITENING_LAYER = "whiten"
WHITENING_FILTERS = 2 * 3 * STEM_SIZE**2
ONEDNN_BLOCK = 16  # oneDNN's AVX-512 kernels block channels by 16

# Batch-norm settings of MXNet's ResNet/ResNeXt examples and model zoo networks.
BN_EPS = 2e-5
BN_MOMENTUM = 0.9


def _conv_bn(
    data: Symbol,
    name: str,
    bn_name: str,
    num_filter: int,
    kernel: int,
    stride: int,
    pad: int,
    num_group: int = 1,
) -> Symbol:
    """A bias-free convolution followed by batch norm (the bias would be cancelled by the BN)."""
    conv = mx.sym.Convolution(
        data=data,
        num_filter=num_filter,
        num_group=num_group,
        kernel=(kernel, kernel),
        stride=(stride, stride),
        pad=(pad, pad),
        no_bias=True,
        name=name,
    )
    return mx.sym.BatchNorm(data=conv, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=bn_name)


def _relu(data: Symbol, name: str) -> Symbol:
    return mx.sym.Activation(data=data, act_type="relu", name=name)


def _softmax(logits: Symbol, label_smoothing: float) -> Symbol:
    """The softmax loss; label smoothing moves `label_smoothing` of each target's weight evenly onto
    the other classes (SoftmaxOutput's smooth_alpha)."""
    return mx.sym.SoftmaxOutput(data=logits, smooth_alpha=label_smoothing, name="softmax")


def _classifier(features: Symbol, num_classes: int, label_smoothing: float, fc_name: str = "fc1") -> Symbol:
    """Flatten, a fully connected layer with one output per class, and the softmax loss."""
    flat = mx.sym.Flatten(data=features, name="flatten0")
    logits = mx.sym.FullyConnected(data=flat, num_hidden=num_classes, name=fc_name)
    return _softmax(logits, label_smoothing)


def _resnext_unit(
    data: Symbol, name: str, width: int, num_filter: int, stride: int, project_shortcut: bool, num_group: int
) -> Symbol:
    """A ResNeXt bottleneck: 1x1 reduce, grouped 3x3, 1x1 expand, added to the shortcut."""
    body = _relu(_conv_bn(data, f"{name}_conv1", f"{name}_bn1", width, 1, 1, 0), f"{name}_relu1")
    body = _relu(
        _conv_bn(body, f"{name}_conv2", f"{name}_bn2", width, 3, stride, 1, num_group=num_group),
        f"{name}_relu2",
    )
    body = _conv_bn(body, f"{name}_conv3", f"{name}_bn3", num_filter, 1, 1, 0)
    if project_shortcut:
        shortcut = _conv_bn(data, f"{name}_sc", f"{name}_sc_bn", num_filter, 1, stride, 0)
    else:
        shortcut = data
    return _relu(mx.sym.elemwise_add(body, shortcut, name=f"{name}_plus"), f"{name}_relu")


def resnext(
    num_classes: int,
    num_layers: int = 101,
    num_group: int = 32,
    bottleneck_width: int = 4,
    label_smoothing: float = 0.0,
) -> Symbol:
    """ResNeXt-{num_layers} ({num_group}x{bottleneck_width}d) with the ImageNet topology.

    Layer names follow MXNet's example/image-classification/symbols/resnext.py (the model zoo's
    resnext-50/101): bn_data, conv0/bn0/relu0/pooling0, stage{i}_unit{j}_{conv1..3,bn1..3,sc,sc_bn},
    pool1, flatten0, fc1, softmax. Unlike that script, small inputs keep the ImageNet stem (so
    pretrained weights still fit) and the final pooling is global, so 28x28 and 32x32 crops work.
    """
    if num_layers not in RESNEXT_UNITS:
        raise ValueError(f"ResNeXt num_layers must be one of {sorted(RESNEXT_UNITS)}, got {num_layers}")
    data = mx.sym.Variable("data")
    # Normalises the raw input; gamma is fixed as in the model zoo network.
    body = mx.sym.BatchNorm(data=data, fix_gamma=True, eps=BN_EPS, momentum=BN_MOMENTUM, name="bn_data")
    body = _relu(_conv_bn(body, "conv0", "bn0", RESNEXT_STEM_FILTERS, 7, 2, 3), "relu0")
    body = mx.sym.Pooling(
        data=body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pooling0"
    )
    for stage, (num_units, num_filter) in enumerate(
        zip(RESNEXT_UNITS[num_layers], RESNEXT_STAGE_FILTERS, strict=True), start=1
    ):
        # The grouped convolution doubles its width with every stage, like the output channels.
        width = num_group * bottleneck_width * 2 ** (stage - 1)
        for unit in range(1, num_units + 1):
            first = unit == 1
            # The first unit of every stage but the first halves the resolution.
            stride = 2 if first and stage > 1 else 1
            body = _resnext_unit(
                body,
                f"stage{stage}_unit{unit}",
                width,
                num_filter,
                stride,
                project_shortcut=first,
                num_group=num_group,
            )
    pool = mx.sym.Pooling(data=body, global_pool=True, pool_type="avg", name="pool1")
    return _classifier(pool, num_classes, label_smoothing)


def _resnet_cifar_unit(data: Symbol, name: str, num_filter: int, downsample: bool) -> Symbol:
    """Two 3x3 conv+BN layers added to the shortcut, then ReLU (He et al. 2015, figure 2).

    When a unit halves the resolution and doubles the channels, the shortcut is the subsampled
    input padded with zero channels (the paper's option A), so it adds no parameters."""
    stride = 2 if downsample else 1
    body = _relu(_conv_bn(data, f"{name}_conv1", f"{name}_bn1", num_filter, 3, stride, 1), f"{name}_relu1")
    body = _conv_bn(body, f"{name}_conv2", f"{name}_bn2", num_filter, 3, 1, 1)
    if downsample:
        # A 1x1 max pool with stride 2 just picks every second pixel.
        subsampled = mx.sym.Pooling(
            data=data, kernel=(1, 1), stride=(2, 2), pool_type="max", name=f"{name}_sc_subsample"
        )
        zeros = mx.sym.zeros_like(subsampled, name=f"{name}_sc_zeros")
        shortcut = mx.sym.Concat(subsampled, zeros, dim=1, name=f"{name}_sc")
    else:
        shortcut = data
    return _relu(mx.sym.elemwise_add(body, shortcut, name=f"{name}_plus"), f"{name}_relu")


def resnet_cifar(num_classes: int, num_layers: int, label_smoothing: float = 0.0) -> Symbol:
    """The CIFAR ResNet of He et al. 2015 with num_layers = 6n + 2 (20, 32, 44, 56, 110, ...).

    A 3x3 conv with 16 filters, then three stages of n basic units with 16, 32 and 64 filters
    (the second and third start by halving the resolution), global average pooling, fc, softmax.
    Names mirror `resnext` (conv0, stage{i}_unit{j}_..., pool1, flatten0, fc1, softmax).
    """
    if num_layers < 8 or (num_layers - 2) % 6:
        raise ValueError(
            f"CIFAR ResNet num_layers must be 6n+2 with n >= 1 (e.g. 20, 32, 44, 56, 110), got {num_layers}"
        )
    units_per_stage = (num_layers - 2) // 6
    data = mx.sym.Variable("data")
    body = _relu(_conv_bn(data, "conv0", "bn0", RESNET_CIFAR_STAGE_FILTERS[0], 3, 1, 1), "relu0")
    for stage, num_filter in enumerate(RESNET_CIFAR_STAGE_FILTERS, start=1):
        for unit in range(1, units_per_stage + 1):
            body = _resnet_cifar_unit(
                body, f"stage{stage}_unit{unit}", num_filter, downsample=unit == 1 and stage > 1
            )
    pool = mx.sym.Pooling(data=body, global_pool=True, pool_type="avg", name="pool1")
    return _classifier(pool, num_classes, label_smoothing)


def _conv_bn_rrelu(
    data: Symbol, num_filter: int, kernel: int, name: str, stride: int = 1, pad: int = 0
) -> Symbol:
    """The notebook's ConvFactory: convolution, batch norm, randomized leaky ReLU."""
    conv = mx.sym.Convolution(
        data=data,
        num_filter=num_filter,
        kernel=(kernel, kernel),
        stride=(stride, stride),
        pad=(pad, pad),
        name=f"conv_{name}",
    )
    # The notebook used the BatchNorm defaults (then as now: fixed gamma, eps 1e-3).
    bn = mx.sym.BatchNorm(data=conv, fix_gamma=True, eps=1e-3, name=f"bn_{name}")
    # An rrelu layer also exposes the random slopes it drew as a second output; keep the first.
    return mx.sym.LeakyReLU(data=bn, act_type="rrelu", name=f"rrelu_{name}")[0]


def _inception_a(
    data: Symbol,
    num_1x1: int,
    num_3x3_reduce: int,
    num_3x3: int,
    num_double_3x3_reduce: int,
    num_double_3x3: int,
    pool_type: str,
    num_proj: int,
    name: str,
) -> Symbol:
    """Inception-BN module keeping the resolution: 1x1, 3x3, double 3x3 and pool+1x1 branches."""
    branch_1x1 = _conv_bn_rrelu(data, num_1x1, 1, f"{name}_1x1")
    branch_3x3 = _conv_bn_rrelu(data, num_3x3_reduce, 1, f"{name}_3x3_reduce")
    branch_3x3 = _conv_bn_rrelu(branch_3x3, num_3x3, 3, f"{name}_3x3", pad=1)
    branch_double = _conv_bn_rrelu(data, num_double_3x3_reduce, 1, f"{name}_double_3x3_reduce")
    branch_double = _conv_bn_rrelu(branch_double, num_double_3x3, 3, f"{name}_double_3x3_0", pad=1)
    branch_double = _conv_bn_rrelu(branch_double, num_double_3x3, 3, f"{name}_double_3x3_1", pad=1)
    pooled = mx.sym.Pooling(
        data=data,
        kernel=(3, 3),
        stride=(1, 1),
        pad=(1, 1),
        pool_type=pool_type,
        name=f"{pool_type}_pool_{name}_pool",
    )
    branch_pool = _conv_bn_rrelu(pooled, num_proj, 1, f"{name}_proj")
    return mx.sym.Concat(
        branch_1x1, branch_3x3, branch_double, branch_pool, name=f"ch_concat_{name}_chconcat"
    )


def _inception_b(
    data: Symbol,
    num_3x3_reduce: int,
    num_3x3: int,
    num_double_3x3_reduce: int,
    num_double_3x3: int,
    name: str,
) -> Symbol:
    """Inception-BN module halving the resolution: strided 3x3, double 3x3 and max-pool branches."""
    branch_3x3 = _conv_bn_rrelu(data, num_3x3_reduce, 1, f"{name}_3x3_reduce")
    branch_3x3 = _conv_bn_rrelu(branch_3x3, num_3x3, 3, f"{name}_3x3", stride=2, pad=1)
    branch_double = _conv_bn_rrelu(data, num_double_3x3_reduce, 1, f"{name}_double_3x3_reduce")
    branch_double = _conv_bn_rrelu(branch_double, num_double_3x3, 3, f"{name}_double_3x3_0", pad=1)
    branch_double = _conv_bn_rrelu(branch_double, num_double_3x3, 3, f"{name}_double_3x3_1", stride=2, pad=1)
    # The notebook's unpadded pool relied on the MXNet of its time rounding output sizes up;
    # today that is pooling_convention="full" (28 -> 14 -> 7, matching the strided convs).
    branch_pool = mx.sym.Pooling(
        data=data,
        kernel=(3, 3),
        stride=(2, 2),
        pool_type="max",
        pooling_convention="full",
        name=f"max_pool_{name}_pool",
    )
    return mx.sym.Concat(branch_3x3, branch_double, branch_pool, name=f"ch_concat_{name}_chconcat")


def inception_rrelu(num_classes: int = 100, label_smoothing: float = 0.0) -> Symbol:
    """The CIFAR-100 notebook's sub-Inception-BN network with randomized ReLU, for 3x28x28 input.

    As in the notebook, the inception stages start directly on the image (no stem) and the
    classifier is named `fc`; the flatten layer is named `flatten0` like in the other networks.
    """
    data = mx.sym.Variable("data")
    body = _inception_a(data, 64, 64, 64, 64, 96, "avg", 32, "3a")
    body = _inception_a(body, 64, 64, 96, 64, 96, "avg", 64, "3b")
    body = _inception_b(body, 128, 160, 64, 96, "3c")
    body = _inception_a(body, 224, 64, 96, 96, 128, "avg", 128, "4a")
    body = _inception_a(body, 192, 96, 128, 96, 128, "avg", 128, "4b")
    body = _inception_a(body, 160, 128, 160, 128, 160, "avg", 128, "4c")
    body = _inception_a(body, 96, 128, 192, 160, 192, "avg", 128, "4d")
    body = _inception_b(body, 128, 192, 192, 256, "4e")
    body = _inception_a(body, 352, 192, 320, 160, 224, "avg", 128, "5a")
    body = _inception_a(body, 352, 192, 320, 192, 224, "max", 128, "5b")
    pool = mx.sym.Pooling(data=body, kernel=(7, 7), stride=(1, 1), pool_type="avg", name="global_pool")
    return _classifier(pool, num_classes, label_smoothing, fc_name="fc")


def _quick_block(data: Symbol, name: str, num_filter: int) -> Symbol:
    """Convolution, 2x2 max pool, BN, ReLU, then convolution, BN, ReLU: pooling before the batch
    norm makes the first convolution's BN and ReLU run on a quarter of the pixels."""
    conv = mx.sym.Convolution(
        data=data, num_filter=num_filter, kernel=(3, 3), pad=(1, 1), no_bias=True, name=f"{name}_conv1"
    )
    pooled = mx.sym.Pooling(data=conv, kernel=(2, 2), stride=(2, 2), pool_type="max", name=f"{name}_pool")
    body = _relu(
        mx.sym.BatchNorm(data=pooled, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}_bn1"),
        f"{name}_relu1",
    )
    return _relu(_conv_bn(body, f"{name}_conv2", f"{name}_bn2", num_filter, 3, 1, 1), f"{name}_relu2")


def quick(num_classes: int, label_smoothing: float = 0.0) -> Symbol:
    """A 7-layer net that learns CIFAR-10 in few epochs: airbench's topology (a stem, three blocks of
    two 3x3 convolutions that each halve the resolution, global max pooling, fc), with a plain 3x3
    stem in place of its whitening layer. For 3x32x32 input.
    """
    data = mx.sym.Variable("data")
    body = _relu(_conv_bn(data, "conv0", "bn0", QUICK_STEM_FILTERS, 3, 1, 1), "relu0")
    for block, num_filter in enumerate(QUICK_BLOCK_FILTERS, start=1):
        body = _quick_block(body, f"block{block}", num_filter)
    pool = mx.sym.Pooling(data=body, global_pool=True, pool_type="max", name="pool1")
    return _classifier(pool, num_classes, label_smoothing)


def _airbench_block(data: Symbol, name: str, in_channels: int, num_filter: int) -> Symbol:
    """airbench's block: convolution, 2x2 max pool, BN, GELU, convolution, BN, GELU."""

    def conv(body: Symbol, layer: int) -> Symbol:
        return mx.sym.Convolution(
            data=body,
            num_filter=num_filter,
            kernel=(3, 3),
            pad=(1, 1),
            no_bias=True,
            name=f"{name}_conv{layer}",
        )

    def bn_gelu(body: Symbol, layer: int) -> Symbol:
        body = mx.sym.BatchNorm(data=body, name=f"{name}_bn{layer}", **AIRBENCH_BATCH_NORM)
        return mx.sym.LeakyReLU(data=body, act_type="gelu", name=f"{name}_gelu{layer}")

    pooled = mx.sym.Pooling(
        data=conv(data, 1), kernel=(2, 2), stride=(2, 2), pool_type="max", name=f"{name}_pool"
    )
    if in_channels % ONEDNN_BLOCK:
        # oneDNN runs a convolution of so many input channels in 8-channel blocks, and 2.4's batch
        # norm backward on such data and a 16-block gradient falls to its reference kernel (23 % of
        # a full-width step). A plain-layout copy (x 1, an op without a oneDNN kernel) lets MXNet
        # reorder the data to the gradient's layout instead: 1.3 s -> 1.0 s per batch of 128.
        pooled = mx.sym._internal._mul_scalar(pooled, scalar=1.0, name=f"{name}_plain_layout")  # noqa: SLF001
    return bn_gelu(conv(bn_gelu(pooled, 1), 2), 2)


def airbench(
    num_classes: int, label_smoothing: float = 0.0, widths: tuple[int, ...] = AIRBENCH_WIDTHS
) -> Symbol:
    """airbench94's net (Keller Jordan, 2024): a 2x2 convolution without padding (`whiten`, 24
    filters: the whitening filters when the experiment sets `whitening`), GELU, three blocks at
    `widths` (64/256/256; airbench95: 128/384/384), global max pooling, a fully connected layer
    without bias and the logits scaled by 1/9. Its batch norms keep the scale at 1 and average
    their statistics quickly (AIRBENCH_BATCH_NORM). For 3x32x32 input."""
    data = mx.sym.Variable("data")
    body = mx.sym.Convolution(
        data=data, num_filter=WHITENING_FILTERS, kernel=(STEM_SIZE, STEM_SIZE), name=WHITENING_LAYER
    )
    body = mx.sym.LeakyReLU(data=body, act_type="gelu", name=f"{WHITENING_LAYER}_gelu")
    for block, (in_channels, num_filter) in enumerate(
        zip((WHITENING_FILTERS, *widths[:-1]), widths, strict=True), start=1
    ):
        body = _airbench_block(body, f"block{block}", in_channels, num_filter)
    pool = mx.sym.Pooling(data=body, global_pool=True, pool_type="max", name="pool1")
    flat = mx.sym.Flatten(data=pool, name="flatten0")
    logits = mx.sym._internal._mul_scalar(  # noqa: SLF001 (named: a plain `*` takes a global counter's)
        mx.sym.FullyConnected(data=flat, num_hidden=num_classes, no_bias=True, name="fc"),
        scalar=AIRBENCH_LOGIT_SCALE,
        name="logit_scale",
    )
    return _softmax(logits, label_smoothing)


NETWORKS: dict[str, Callable[..., Symbol]] = {
    "resnext": resnext,
    "inception_rrelu": inception_rrelu,
    "resnet": resnet_cifar,
    "quick": quick,
    "airbench": airbench,
}


def build(name: str, num_classes: int, **options) -> Symbol:
    """The network configured as `name`, with `options` passed on to its builder."""
    if name not in NETWORKS:
        raise ValueError(f"unknown network {name!r}; known networks: {', '.join(NETWORKS)}")
    return NETWORKS[name](num_classes=num_classes, **options)


def fine_tune(
    symbol: Symbol, arg_params: dict, num_classes: int, layer: str = "flatten0", label_smoothing: float = 0.0
) -> tuple[Symbol, dict]:
    """Put a new `num_classes`-way classifier on the output of `layer` of a pretrained network.

    Returns the new symbol (`layer` -> FullyConnected `fc` -> SoftmaxOutput `softmax`) and the
    pretrained arguments it reuses: those of the layers up to `layer`. Everything after it (the
    old classifier) is dropped, even a layer that was also named `fc`, so the new `fc` is left to
    be initialised. Auxiliary states (batch-norm moving mean and variance) are not touched: pass
    the pretrained aux_params on unchanged; those of layers that are no longer used are ignored.
    """
    internals = symbol.get_internals()
    outputs = internals.list_outputs()
    wanted = f"{layer}_output"
    if wanted not in outputs:
        candidates = [out[: -len("_output")] for out in outputs if out.endswith("_output")]
        raise ValueError(
            f"layer {layer!r} not found in the pretrained network; the last layers "
            f"are: {', '.join(candidates[-6:])}"
        )
    features = internals[wanted]
    feature_args = set(features.list_arguments())
    if "fc_weight" in feature_args:
        raise ValueError(
            f"the network up to {layer!r} already has a layer named 'fc'; "
            "the new classifier would share its parameters"
        )
    logits = mx.sym.FullyConnected(data=features, num_hidden=num_classes, name="fc")
    new_symbol = _softmax(logits, label_smoothing)
    kept = {name: value for name, value in arg_params.items() if name in feature_args}
    return new_symbol, kept


def in_bfloat16(symbol: Symbol) -> Symbol:
    """`symbol` with its convolutions and fully connected layers computing in bfloat16 (MXNet's AMP):
    parameters, gradients and the optimizer's state stay float32, so a checkpoint is a float32 model,
    and no loss scaling is needed. MXNet 1.9.1's conversion needs three corrections for these nets:

    - `zeros_like` computes in bfloat16 (zeros are exact), so that the CIFAR ResNet's shortcut
      Concat gets both halves in one type ("Non-uniform data type in Concat");
    - rrelu stays float32 (it has no bfloat16 kernel);
    - the nodes of `float32_nodes` are kept in float32."""
    from mxnet.contrib import amp

    bfloat16 = amp.amp.bfloat16
    fp32_ops = [op for op in amp.list_fp32_ops(bfloat16) if op != "zeros_like"]
    conditional = [rule for rule in amp.list_conditional_fp32_ops(bfloat16) if rule[0] != "LeakyReLU"]
    conditional.append(("LeakyReLU", "act_type", ["elu", "selu", "rrelu"]))
    return amp.convert_symbol(
        symbol,
        target_dtype="bfloat16",
        data_names=["data"],
        fp32_ops=fp32_ops,
        conditional_fp32_ops=conditional,
        excluded_sym_names=float32_nodes(symbol, set(fp32_ops), conditional, amp),
    )


def float32_nodes(symbol: Symbol, fp32_ops: set[str], conditional: list[tuple], amp) -> list[str]:
    """Nodes the bfloat16 conversion must keep in float32: a global pool without a kernel (MXNet's own
    kernel, no bfloat16: "Unknown type enum 12"), and a node that MXNet 1.9.1's pass would record as
    bfloat16 although it reads a float32 tensor (one the pass also casts to bfloat16 for a sibling
    convolution), which breaks the types downstream. The pass's bookkeeping is replayed to find them:
    an operator of no list computes in the type of its first input."""
    bfloat16 = amp.amp.bfloat16
    target_ops, widest_ops = set(amp.list_lp16_ops(bfloat16)), set(amp.list_widest_type_cast(bfloat16))
    nodes = json.loads(symbol.tojson())["nodes"]
    readers: dict[tuple[int, int], list[int]] = {}
    for index, node in enumerate(nodes):
        for source, output, _ in node["inputs"]:
            readers.setdefault((source, output), []).append(index)
    in_bf16: dict[tuple[int, int], bool] = {}  # each node output: computed in bfloat16?
    kept = []
    for index, node in enumerate(nodes):
        operator, attrs = node["op"], node.get("attrs", {})
        inputs = [in_bf16.get((source, output), False) for source, output, _ in node["inputs"]]
        if operator == "null":
            bf16 = False
        elif operator == "Pooling" and attrs.get("global_pool") == "True" and "kernel" not in attrs:
            kept.append(node["name"])
            bf16 = False
        elif operator in fp32_ops or any(
            operator == op and attrs.get(key) in values for op, key, values in conditional
        ):
            bf16 = False
        elif operator in target_ops:
            bf16 = True
        elif operator in widest_ops:
            bf16 = all(inputs)
        else:
            bf16 = bool(inputs) and inputs[0]
            first = tuple(node["inputs"][0][:2]) if node["inputs"] else None
            cast_for_a_sibling = first and any(
                nodes[reader]["op"] in target_ops for reader in readers[first] if reader != index
            )
            if not bf16 and cast_for_a_sibling:
                kept.append(node["name"])
        outputs = 2 if operator == "LeakyReLU" and attrs.get("act_type") == "rrelu" else 1
        for output in range(outputs):
            in_bf16[(index, output)] = bf16
    return kept
