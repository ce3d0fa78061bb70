"""The whitening filters of a network's first layer, after airbench (Keller Jordan, 2024): a
convolution without padding whose k x k filters are the eigenvectors of the k x k patch covariance
of training images, each scaled by 1 / sqrt(eigenvalue + eps), concatenated with their negatives
(2 x 3 x k x k filters). Its output has (about) unit, uncorrelated channels, which the rest of the
net learns from faster; the weights stay frozen during training.

The patches are those of the images as the network sees them, less the training split's mean
image, each channel divided by its standard deviation; the filters are then rescaled to take the
images without the division, so they apply to what the loader feeds the net. Sums run in numpy's
own loops (einsum), not in a multithreaded BLAS, so a rebuild gives the same bytes.
"""

import io
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError

STEM_SIZE = 2  # airbench's stem: 2x2 filters, 2 x 3 x 2 x 2 = 24 of them
EPS = 5e-4  # airbench's
IMAGES = 5000  # the first images of the training split (airbench's count)


def patches(images: np.ndarray, size: int) -> np.ndarray:
    """Every size x size patch of (N, C, H, W) images, as rows of C * size * size values."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(2, 3))
    # (N, C, H', W', size, size) -> (N, H', W', C, size, size)
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(-1, images.shape[1] * size * size)


def whitening_filters(
    images: np.ndarray, mean: np.ndarray, size: int, count: int = IMAGES, eps: float = EPS
) -> np.ndarray:
    """float32 (2 * C * size * size, C, size, size) filters from the first `count` of uint8
    (N, C, H, W) `images` (all of them, if fewer), less `mean` (C, H, W); the eigenvectors of the
    largest eigenvalues first."""
    centred = images[:count].astype(np.float64) - mean
    scale = centred.std(axis=(0, 2, 3))  # per channel
    rows = patches(centred / scale[:, None, None], size)
    covariance = np.einsum("ni,nj->ij", rows, rows) / len(rows)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigenvalues)[::-1]
    channels = images.shape[1]
    filters = (eigenvectors[:, order].T / np.sqrt(eigenvalues[order] + eps)[:, None]).reshape(
        -1, channels, size, size
    )
    filters = filters / scale[None, :, None, None]  # for images not divided by the scale
    return np.concatenate([filters, -filters]).astype(np.float32)


def save_filters(filters: np.ndarray, path: str | Path) -> None:
    buffer = io.BytesIO()
    np.save(buffer, filters, allow_pickle=False)
    with atomic_path(path) as partial:
        partial.write_bytes(buffer.getvalue())


def load_filters(path: str | Path, channels: int, size: int) -> np.ndarray:
    filters = np.load(path, allow_pickle=False)
    expected = (2 * channels * size * size, channels, size, size)
    if filters.shape != expected or filters.dtype != np.float32:
        raise InputError(
            f"{path}: whitening filters of shape {filters.shape} ({filters.dtype}), not {expected}"
        )
    return filters
