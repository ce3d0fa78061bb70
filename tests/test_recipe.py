"""airbench's recipe, part by part, in-process: the whitening filters, the piecewise-linear schedule,
lookahead, dirac init, the per-parameter multipliers, the in-memory augmentation and the weighted
test-time views. tests/test_training.py trains it through snakemake (and resumes it)."""

import cv2
import mxnet as mx
import numpy as np
import pytest
from conftest import tiny_experiment

from cifar_repro import layout, models, training, whitening
from cifar_repro.augment import MemoryBatches, decode_split
from cifar_repro.errors import InputError
from cifar_repro.lookahead import Lookahead
from cifar_repro.schema import with_defaults


def random_images(count: int, seed: int = 0) -> np.ndarray:
    """uint8 (N, 3, 32, 32) images with correlated neighbouring pixels, as photographs have."""
    noise = np.random.RandomState(seed).rand(count, 3, 33, 33) * 255
    return ((noise[:, :, 1:, 1:] + noise[:, :, :-1, :-1]) / 2).astype(np.uint8)


def patch_rows(images: np.ndarray) -> np.ndarray:
    """Every 2x2 patch of (N, C, 32, 32) images as a row, by plain loops."""
    return np.array(
        [
            images[n, :, y : y + 2, x : x + 2].ravel()
            for n in range(len(images))
            for y in range(31)
            for x in range(31)
        ]
    )


def test_whitening_filters_are_the_patch_covariances_scaled_eigenvectors():
    images = random_images(40)
    mean = images.astype(np.float64).mean(axis=0)
    filters = whitening.whitening_filters(images, mean, size=2)
    assert filters.shape == (24, 3, 2, 2) and filters.dtype == np.float32
    np.testing.assert_array_equal(filters[12:], -filters[:12])

    # numpy's general eigendecomposition of the covariance of every 2x2 patch, built by loops
    centred = images.astype(np.float64) - mean
    scale = centred.std(axis=(0, 2, 3))
    normalised = centred / scale[:, None, None]
    rows = patch_rows(normalised)
    eigenvalues, eigenvectors = np.linalg.eig(rows.T @ rows / len(rows))
    order = np.argsort(eigenvalues)[::-1]
    for ours, value, vector in zip(filters[:12], eigenvalues[order], eigenvectors.T[order], strict=True):
        # the filter takes images not divided by the scale: undo that to compare
        unscaled = (ours * scale[:, None, None]).ravel() * np.sqrt(value + whitening.EPS)
        sign = np.sign(unscaled @ vector)  # an eigenvector's sign is arbitrary
        np.testing.assert_allclose(unscaled * sign, vector, atol=1e-4)

    # applied to the centred images, they decorrelate the patches: covariance lambda / (lambda + eps)
    whitened = patch_rows(centred) @ filters[:12].reshape(12, -1).astype(np.float64).T
    covariance = whitened.T @ whitened / len(whitened)
    descending = eigenvalues[order]
    expected = np.diag(descending / (descending + whitening.EPS))
    np.testing.assert_allclose(covariance, expected, atol=1e-4)


def test_whitening_filters_rebuild_byte_identical_and_a_wrong_file_is_refused(tmp_path):
    images = random_images(20, seed=3)
    mean = images.astype(np.float64).mean(axis=0)
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    whitening.save_filters(whitening.whitening_filters(images, mean, 2), first)
    whitening.save_filters(whitening.whitening_filters(images.copy(), mean.copy(), 2), second)
    assert first.read_bytes() == second.read_bytes()
    np.testing.assert_array_equal(whitening.load_filters(first, 3, 2), np.load(first))
    with pytest.raises(
        InputError,
        match=r"a\.npy: whitening filters of shape \(24, 3, 2, 2\) \(float32\), not \(54, 3, 3, 3\)",
    ):
        whitening.load_filters(first, 3, 3)


def test_the_piecewise_linear_schedule_interpolates_between_its_points():
    airbench = {"type": "piecewise_linear", "points": [[0, 0.2], [0.23, 1], [1, 0.07]]}
    rates = [training.learning_rate(1.5, airbench, epoch, 10) for epoch in (0, 1.15, 2.3, 6.15, 10)]
    assert rates == pytest.approx([0.3, 0.9, 1.5, 1.5 * (1 - 0.93 / 2), 0.105])


def fully_connected_module(weight: float) -> mx.mod.Module:
    """A one-layer net with a BatchNorm (an aux state, which lookahead averages too)."""
    data = mx.sym.Variable("data")
    body = mx.sym.BatchNorm(mx.sym.FullyConnected(data, num_hidden=2, name="fc"), name="bn")
    module = mx.mod.Module(mx.sym.SoftmaxOutput(body, name="softmax"), context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 2))], label_shapes=[("softmax_label", (1,))])
    module.init_params(mx.init.Constant(weight))
    return module


def set_everything(module: mx.mod.Module, value: float) -> None:
    arg, aux = module.get_params()
    module.set_params({k: v * 0 + value for k, v in arg.items()}, {k: v * 0 + value for k, v in aux.items()})


def test_lookahead_moves_the_average_towards_the_net_as_a_hand_computation_does():
    settings = {"start_epoch": 1, "every_steps": 2, "decay": 0.9, "power": 2}
    module = fully_connected_module(0.0)
    lookahead = Lookahead(settings, batches_per_epoch=4, num_epochs=2)  # 8 steps
    values = {}
    for epoch in range(2):
        for number in range(1, 5):
            step = epoch * 4 + number
            set_everything(module, float(step))  # as if the update had moved every value to `step`
            lookahead.after_update(module, epoch, number)
            values[step] = module.get_params()[0]["fc_weight"].asnumpy()[0, 0]
    base = 0.9**2
    # steps 1-5 leave the net alone; step 6 starts the average from the net; step 8 averages
    assert [values[s] for s in range(1, 8)] == [1, 2, 3, 4, 5, 6, 7]
    expected = 6 + (8 - 6) * (1 - base * (8 / 8) ** 2)
    assert values[8] == pytest.approx(expected)
    assert module.get_params()[1]["bn_moving_mean"].asnumpy()[0] == pytest.approx(expected)
    set_everything(module, 100.0)
    lookahead.end_epoch(module)  # the net is the average at the end of an epoch
    assert module.get_params()[0]["fc_weight"].asnumpy()[0, 0] == pytest.approx(expected)


def test_a_resumed_lookahead_restarts_from_the_checkpoints_parameters_once_it_had_started():
    settings = {"start_epoch": 1, "every_steps": 2, "decay": 0.9, "power": 2}
    module = fully_connected_module(3.0)
    lookahead = Lookahead(settings, batches_per_epoch=4, num_epochs=3)
    lookahead.resume(module, begin_epoch=1)
    assert lookahead.average is None  # its first step (6) lies after the checkpoint
    lookahead.resume(module, begin_epoch=2)
    assert lookahead.average[0]["fc_weight"].asnumpy()[0, 0] == 3.0


def test_dirac_init_makes_each_convolution_pass_its_input_channels_through():
    symbol = mx.sym.Convolution(
        mx.sym.Variable("data"), num_filter=6, kernel=(3, 3), pad=(1, 1), no_bias=True, name="c"
    )
    module = mx.mod.Module(symbol, label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 4, 5, 5))], for_training=False)
    init = {"xavier": {"rnd_type": "uniform", "factor_type": "in", "magnitude": 1}, "dirac": True}
    module.init_params(models.initializer(init))
    images = mx.nd.random.uniform(0, 1, (1, 4, 5, 5))
    module.forward(mx.io.DataBatch([images]), is_train=False)
    output = module.get_outputs()[0].asnumpy()
    np.testing.assert_allclose(output[:, :4], images.asnumpy(), rtol=1e-6)
    weight = module.get_params()[0]["c_weight"].asnumpy()
    assert np.abs(weight[4:]).max() > 0 and np.abs(weight[4:]).max() <= 1 / np.sqrt(4 * 9)


def test_multipliers_follow_the_first_matching_rule_and_the_whitening_bias_freezes():
    airbench = tiny_experiment(
        network="airbench",
        data_shape=[3, 32, 32],
        param_multipliers=[
            {"match": "_beta$", "lr_mult": 64, "wd_mult": 0.25},
            {"match": "bn1_beta$", "lr_mult": 2},  # never reached: the first rule matches
            {"match": "^whiten_bias$"},
        ],
        whitening={"bias_epochs": 3},
    )
    del airbench["num_layers"]
    experiment = with_defaults(airbench)
    names = ["whiten_bias", "block1_bn1_beta", "fc_weight"]
    optimizer = mx.optimizer.SGD(learning_rate=1.0, param_idx2name=dict(enumerate(names)))
    training.set_multipliers(optimizer, experiment, names, epoch=2)
    assert [optimizer.lr_mult.get(n, 1) for n in names] == [1, 64, 1]
    # a rule's wd_mult replaces MXNet's 0 for biases (the stem's bias is decayed, as in airbench)
    assert [optimizer.wd_mult.get(n, 1) for n in names] == [1, 0.25, 1]
    training.set_multipliers(optimizer, experiment, names, epoch=3)
    assert optimizer.lr_mult["whiten_bias"] == 0


@pytest.mark.parametrize("flip, shift", [(True, 1), (False, 1)])
def test_half_shifted_weights_give_the_unshifted_views_half_the_vote(flip, shift):
    weights = training.view_weights(flip, shift, "half_shifted")
    views = training.test_time_views(mx.nd.zeros((1, 3, 4, 4)), flip, shift)
    assert len(weights) == len(views) and sum(weights) == pytest.approx(1)
    shifted = [1, 2, 4, 5] if flip else [1, 2]
    assert sum(w for i, w in enumerate(weights) if i in shifted) == pytest.approx(0.5)
    assert training.view_weights(flip, 0, "half_shifted") is None  # no shifts: a plain mean
    assert training.view_weights(flip, shift, "uniform") is None


def packed_split(folder, images: np.ndarray) -> layout.PackedDataset:
    """`images` (N, 3, H, W, RGB) packed losslessly as a .rec, each record's label its index."""
    rec, idx = folder / "train.rec", folder / "train.idx"
    writer = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    for key, image in enumerate(images):
        bgr = cv2.cvtColor(image.transpose(1, 2, 0), cv2.COLOR_RGB2BGR)
        header = mx.recordio.IRHeader(0, float(key), key, 0)
        writer.write_idx(key, mx.recordio.pack_img(header, bgr, img_fmt=".png"))
    writer.close()
    return layout.PackedDataset(str(rec), str(idx), str(rec), str(idx))


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    images = random_images(45, seed=5)
    return images, packed_split(tmp_path_factory.mktemp("split"), images)


def memory_batches(data, seed=0, **augment) -> MemoryBatches:
    spec = with_defaults(tiny_experiment(data_shape=[3, 32, 32], batch_size=10, augment=augment))
    return MemoryBatches(data, spec, seed, part=(0, 1), mean=None)


def test_the_split_decodes_in_record_order_without_the_last_batchs_filling(split):
    images, data = split
    decoded, labels = decode_split(data.train_rec, data.train_idx, (3, 32, 32))
    np.testing.assert_array_equal(decoded, images)
    np.testing.assert_array_equal(labels, np.arange(45))


def test_alternating_flip_mirrors_a_random_half_then_flips_every_image_each_epoch(split):
    _, data = split
    batches = memory_batches(data, seed=4, translate=2, alternating_flip=True)
    generator = np.random.RandomState(0)
    first = batches.flips(0, generator)
    assert 10 <= first.sum() <= 35
    np.testing.assert_array_equal(batches.flips(1, generator), ~first)
    np.testing.assert_array_equal(batches.flips(2, generator), first)
    # the same per seed (a resumed run's), another for another seed
    np.testing.assert_array_equal(
        memory_batches(data, seed=4, translate=2, alternating_flip=True).flips(0, generator), first
    )
    assert not np.array_equal(
        memory_batches(data, seed=5, translate=2, alternating_flip=True).flips(0, generator), first
    )


def test_translated_batches_are_reflect_padded_windows_of_every_image_mirrored_as_flips_says(split):
    images, data = split
    batches = memory_batches(data, seed=1, translate=2, alternating_flip=True)
    padded = np.pad(images, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect").astype(np.float32)
    flips = batches.flips(3, None)
    seen = []
    epoch = list(batches.epoch(3, epoch_seed=7))
    assert len(epoch) == 5 and [b.pad for b in epoch] == [0, 0, 0, 0, 5]
    shifts = set()
    for batch in epoch:
        labels = batch.label[0].asnumpy().astype(int)
        for image, label in zip(batch.data[0].asnumpy(), labels, strict=True):
            seen.append(label)
            if flips[label]:
                image = image[:, :, ::-1]
            offsets = [
                (y, x)
                for y in range(5)
                for x in range(5)
                if np.array_equal(padded[label, :, y : y + 32, x : x + 32], image)
            ]
            assert offsets, f"image {label} is no window of its padded self"
            shifts.add(offsets[0])
    assert sorted(set(seen)) == list(range(45)) and len(seen) == 50  # the last batch filled up
    assert len(shifts) > 5  # shifted every which way
    again = next(batches.epoch(3, epoch_seed=7)).data[0].asnumpy()
    np.testing.assert_array_equal(again, epoch[0].data[0].asnumpy())  # reproducible per epoch seed
