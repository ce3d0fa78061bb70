import mxnet as mx
import numpy as np
import pytest

from cifar_repro.errors import InputError
from cifar_repro.mean import crop_mean, mean_image, save_mean


def test_crop_mean_is_the_mean_over_every_window():
    rng = np.random.default_rng(0)
    full = rng.uniform(0, 255, (3, 8, 7))
    expected = np.zeros((3, 5, 3))
    offsets = [(top, left) for top in range(4) for left in range(5)]
    for top, left in offsets:
        expected += full[:, top : top + 5, left : left + 3]
    np.testing.assert_allclose(crop_mean(full, 5, 3), expected / len(offsets))


def test_uncropped_mean_is_the_pixel_mean_and_float32():
    images = np.random.default_rng(1).integers(0, 256, (20, 3, 32, 32), dtype=np.uint8)
    mean = mean_image(images, 32, 32)
    assert mean.dtype == np.float32 and mean.shape == (3, 32, 32)
    np.testing.assert_allclose(mean, images.mean(axis=0), rtol=1e-6)


def test_a_constant_image_has_the_same_mean_at_any_crop():
    images = np.full((4, 3, 32, 32), 7, dtype=np.uint8)
    np.testing.assert_array_equal(mean_image(images, 28, 28), np.full((3, 28, 28), 7, np.float32))


@pytest.mark.parametrize("height, width", [(33, 28), (28, 0)])
def test_crops_that_do_not_fit_are_refused(height, width):
    with pytest.raises(InputError, match=f"crop {height}x{width} does not fit in 32x32 images"):
        crop_mean(np.zeros((3, 32, 32)), height, width)


@pytest.mark.parametrize("shape", [(3, 32, 32), (3, 24, 20)])
def test_the_mean_file_has_the_bytes_mx_nd_save_writes(tmp_path, shape):
    mean = np.random.default_rng(2).uniform(0, 255, shape).astype(np.float32)
    save_mean(mean, tmp_path / "ours.bin")
    mx.nd.save(str(tmp_path / "mxnet.bin"), {"mean_img": mx.nd.array(mean, dtype=np.float32)})
    assert (tmp_path / "ours.bin").read_bytes() == (tmp_path / "mxnet.bin").read_bytes()
    loaded = mx.nd.load(str(tmp_path / "ours.bin"))
    np.testing.assert_array_equal(loaded["mean_img"].asnumpy(), mean)
