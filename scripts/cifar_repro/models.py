"""The model a training run starts from, and the parameters it keeps fixed.

- scratch: the configured network, initialised by the training loop;
- pretrained: a pretrained network cut at a layer (flatten0) with a new `fc` for this dataset;
- experiment: another experiment's final model, continued as it is (e.g. a second stage).
"""

from dataclasses import dataclass

import mxnet as mx
import numpy as np

from . import networks
from .checkpoints import load_params
from .errors import InputError


@dataclass
class InitialModel:
    symbol: mx.sym.Symbol
    arg_params: dict | None  # None: every parameter is initialised afresh
    aux_params: dict | None
    description: str


def initial_model(
    experiment: dict, num_classes: int, init_symbol: str | None, init_params: str | None
) -> InitialModel:
    init = experiment["init"]
    if init["type"] == "scratch":
        options = {k: experiment[k] for k in ("num_layers", "widths") if k in experiment}
        symbol = networks.build(
            experiment["network"], num_classes, label_smoothing=experiment["label_smoothing"], **options
        )
        xavier = init["xavier"]
        described = f"random (Xavier {xavier['rnd_type']}, {xavier['factor_type']}, {xavier['magnitude']:g}"
        return InitialModel(symbol, None, None, described + (", dirac)" if init["dirac"] else ")"))
    try:
        symbol = mx.sym.load(init_symbol)
        arg_params, aux_params = load_params(init_params)
    except mx.base.MXNetError as error:
        raise InputError(f"{init_symbol} / {init_params}: not a loadable MXNet model: {error}") from error
    if init["type"] == "experiment":
        return InitialModel(
            symbol, arg_params, aux_params, f"experiment {init['experiment']} ({init_params})"
        )
    try:
        symbol, arg_params = networks.fine_tune(
            symbol, arg_params, num_classes, init["layer"], experiment["label_smoothing"]
        )
    except ValueError as error:
        raise InputError(f"{init_symbol}: {error}") from error
    described = f"pretrained {init['model']} cut at {init['layer']} ({init_params})"
    return InitialModel(symbol, arg_params, aux_params, described)


class DiracInit(mx.init.Initializer):
    """`base`, then the first in_channels filters of every convolution set to the identity (airbench's
    dirac init: each such layer starts as an implicit residual)."""

    def __init__(self, base: mx.init.Initializer):
        super().__init__()
        self.base = base

    def __call__(self, desc, arr):
        self.base(desc, arr)
        if desc.endswith("_weight") and arr.ndim == 4 and arr.shape[2] % 2 and arr.shape[3] % 2:
            out_channels, in_channels, height, width = arr.shape
            channels = np.arange(min(in_channels, out_channels))
            value = arr.asnumpy()
            value[channels] = 0
            value[channels, channels, height // 2, width // 2] = 1
            arr[:] = value


def initializer(init: dict) -> mx.init.Initializer:
    """The initializer of a run's fresh parameters: mx.init.Xavier with the experiment's arguments
    (fit.py's He normal by default), with `dirac`, DiracInit over it."""
    xavier = mx.init.Xavier(**init["xavier"])
    return DiracInit(xavier) if init["dirac"] else xavier


def frozen_parameters(argument_names: list[str], frozen_layers: list[str]) -> list[str]:
    """The parameters of the named layers (MXNet names them <layer>_weight, <layer>_gamma, ...)."""
    return [name for name in argument_names if any(name.startswith(f"{layer}_") for layer in frozen_layers)]


def check_mean_shape(mean_path: str, data_shape: tuple[int, ...]) -> None:
    """ImageRecordIter does not check this: a wrong-sized mean is silently misapplied."""
    shape = tuple(mx.nd.load(mean_path)["mean_img"].shape)
    if shape != tuple(data_shape):
        raise InputError(
            f"{mean_path}: mean image has shape {shape}, but data_shape is {tuple(data_shape)}; "
            f"use mean_{data_shape[1]}x{data_shape[2]}.bin"
        )
