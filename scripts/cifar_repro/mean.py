"""The mean image of a training split, in the format ImageRecordIter's `mean_img` loads.

ImageRecordIter subtracts `mean_img` from the image *after* cropping, pixel by pixel, so the mean
must have the crop's shape (3, H, W). With `rand_crop` every H x W window of the 32 x 32 image is
equally likely, so the mean of what the network sees is the average, over all window offsets, of
the full-size mean image: the value MXNet's own mean pass over a randomly cropped iterator tends
to, computed here exactly and deterministically. For H x W = 32 x 32 it is the plain pixel mean.
The same file serves validation (centre crops), as in MXNet's examples. Mirroring happens after
the subtraction, so it does not enter the mean. Channels are R, G, B like the iterator's output.
"""

import logging
import struct
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError

log = logging.getLogger(__name__)


def crop_mean(full_mean: np.ndarray, height: int, width: int) -> np.ndarray:
    """Average of every height x width window of a (C, H0, W0) mean image."""
    channels, full_height, full_width = full_mean.shape
    if not (0 < height <= full_height and 0 < width <= full_width):
        raise InputError(f"crop {height}x{width} does not fit in {full_height}x{full_width} images")
    windows = [
        full_mean[:, top : top + height, left : left + width]
        for top in range(full_height - height + 1)
        for left in range(full_width - width + 1)
    ]
    return np.mean(windows, axis=0)


def mean_image(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 (3, height, width) mean of uint8 (N, 3, H0, W0) images under uniform random crops."""
    full_mean = images.mean(axis=0, dtype=np.float64)
    return crop_mean(full_mean, height, width).astype(np.float32)


# MXNet's NDArray list file (mx.nd.save), little-endian: a header, each array (here one dense float32
# array on the CPU), then the names. Written here because importing MXNet to save it takes about a
# second, twenty times the computation; tests check the bytes against mx.nd.save's.
LIST_MAGIC, ARRAY_V2_MAGIC = 0x112, 0xF993FAC9
DENSE_STORAGE, CPU_DEVICE, FLOAT32 = 0, 1, 0


def ndarray_file_bytes(name: str, array: np.ndarray) -> bytes:
    """What mx.nd.save(path, {name: mx.nd.array(array)}) writes, for a float32 array."""
    array = np.ascontiguousarray(array, dtype="<f4")
    key = name.encode()
    return b"".join(
        [
            struct.pack("<QQQ", LIST_MAGIC, 0, 1),
            struct.pack(f"<IiI{array.ndim}q", ARRAY_V2_MAGIC, DENSE_STORAGE, array.ndim, *array.shape),
            struct.pack("<iii", CPU_DEVICE, 0, FLOAT32),
            array.tobytes(),
            struct.pack("<QQ", 1, len(key)),
            key,
        ]
    )


def save_mean(mean: np.ndarray, path: str | Path) -> None:
    with atomic_path(path) as partial:
        partial.write_bytes(ndarray_file_bytes("mean_img", mean))
