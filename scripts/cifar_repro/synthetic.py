"""Generate a small, learnable CIFAR-format archive: the demo's embedded default and the tests' data.

Each class is a shape in a colour, drawn at a jittered position and size on a noisy background, so a
small network learns it in a few epochs yet it is not trivially separable. The archive has the exact
member names, pickle keys and dtypes of the official cifar-10-python.tar.gz / cifar-100-python.tar.gz
(bytes keys, protocol 2, uint8 (N, 3072) R,G,B planes), and is byte-for-byte reproducible from its
arguments (fixed seed, zero mtimes), so its MD5 can be pinned in a config.

CIFAR-100 layout: fine class = (shape, colour), 10 x 10; coarse class = shape with a warm or cool
palette, 20 groups of 5 fine classes, as in CIFAR-100.
"""

import gzip
import hashlib
import io
import logging
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .atomic import atomic_path

SHAPES = ["disc", "square", "triangle", "cross", "ring", "hbar", "vbar", "diamond", "checker", "stripes"]
COLOURS = {  # the first five are the "warm" palette, the last five the "cool" one
    "red": (220, 40, 40),
    "orange": (240, 140, 20),
    "yellow": (230, 220, 40),
    "pink": (240, 120, 200),
    "white": (235, 235, 235),
    "green": (40, 180, 60),
    "teal": (30, 170, 170),
    "blue": (40, 70, 220),
    "purple": (130, 50, 190),
    "black": (20, 20, 20),
}
SIZE = 32

log = logging.getLogger(__name__)


def shape_mask(shape: str, centre_y: float, centre_x: float, radius: float) -> np.ndarray:
    """Boolean 32x32 mask of one shape."""
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    dy, dx = y - centre_y, x - centre_x
    inside = (np.abs(dy) <= radius) & (np.abs(dx) <= radius)
    thickness = radius / 3
    masks = {
        "disc": dy**2 + dx**2 <= radius**2,
        "square": inside,
        "triangle": inside & (dy >= -radius) & (np.abs(dx) <= (dy + radius) / 2),
        "cross": inside & ((np.abs(dy) <= thickness) | (np.abs(dx) <= thickness)),
        "ring": np.abs(np.sqrt(dy**2 + dx**2) - radius * 0.75) <= thickness,
        "hbar": inside & (np.abs(dy) <= thickness),
        "vbar": inside & (np.abs(dx) <= thickness),
        "diamond": np.abs(dy) + np.abs(dx) <= radius,
        "checker": inside & (((y // 4) + (x // 4)) % 2 == 0),
        "stripes": inside & (((y + x) // 3) % 2 == 0),
    }
    return masks[shape]


def draw(shape: str, colour: tuple[int, int, int], rng: np.random.Generator, noise: float) -> np.ndarray:
    """One (3, 32, 32) uint8 RGB image."""
    background = rng.integers(60, 180, size=3)[:, None, None] + rng.normal(0, noise, (3, SIZE, SIZE))
    radius = rng.uniform(7, 11)
    centre = rng.uniform(radius, SIZE - 1 - radius, size=2)
    mask = shape_mask(shape, centre[0], centre[1], radius)
    ink = np.asarray(colour, dtype=np.float64)[:, None, None] + rng.normal(0, noise, (3, SIZE, SIZE))
    image = np.where(mask[None], ink, background)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def classes(dataset: str) -> list[tuple[str, str]]:
    """(shape, colour) of each fine class, in label order."""
    colours = list(COLOURS)
    if dataset == "cifar10":
        return list(zip(SHAPES, colours, strict=True))
    return [(shape, colour) for shape in SHAPES for colour in colours]


def make_split(dataset: str, per_class: int, rng: np.random.Generator, noise: float):
    """Images and labels of one split, classes interleaved in a random order as in CIFAR."""
    fine = classes(dataset)
    labels = rng.permutation(np.repeat(np.arange(len(fine)), per_class))
    images = np.stack([draw(fine[k][0], COLOURS[fine[k][1]], rng, noise) for k in labels])
    return images.reshape(len(labels), -1), labels


def coarse_labels(fine_labels) -> list[int]:
    """Fine classes come in runs of five colours of one palette, as CIFAR-100's 20 superclasses of 5."""
    return [int(k) // 5 for k in fine_labels]


def _batch(images, labels, batch_label: str, first_index: int, label_key: str, extra=None) -> dict:
    batch = {
        b"batch_label": batch_label.encode(),
        label_key.encode(): [int(k) for k in labels],
        b"data": images,
        b"filenames": [f"synthetic_{first_index + i:05d}.png".encode() for i in range(len(labels))],
    }
    batch.update(extra or {})
    return batch


def archive_members(
    dataset: str, train_per_class: int, test_per_class: int, seed: int, noise: float
) -> dict[str, dict]:
    """Member name -> pickled object, in the official archive's layout."""
    rng = np.random.default_rng(seed)
    train_images, train_labels = make_split(dataset, train_per_class, rng, noise)
    test_images, test_labels = make_split(dataset, test_per_class, rng, noise)
    fine = classes(dataset)
    if dataset == "cifar10":
        per_batch = -(-len(train_labels) // 5)
        members = {
            f"cifar-10-batches-py/data_batch_{i + 1}": _batch(
                train_images[i * per_batch : (i + 1) * per_batch],
                train_labels[i * per_batch : (i + 1) * per_batch],
                f"training batch {i + 1} of 5",
                i * per_batch,
                "labels",
            )
            for i in range(5)
        }
        members["cifar-10-batches-py/test_batch"] = _batch(
            test_images, test_labels, "testing batch 1 of 1", 0, "labels"
        )
        members["cifar-10-batches-py/batches.meta"] = {
            b"num_cases_per_batch": per_batch,
            b"label_names": [f"{colour}_{shape}".encode() for shape, colour in fine],
            b"num_vis": 3072,
        }
        return members
    palette = ["warm", "cool"]
    return {
        "cifar-100-python/train": _batch(
            train_images,
            train_labels,
            "training batch 1 of 1",
            0,
            "fine_labels",
            {b"coarse_labels": coarse_labels(train_labels)},
        ),
        "cifar-100-python/test": _batch(
            test_images,
            test_labels,
            "testing batch 1 of 1",
            0,
            "fine_labels",
            {b"coarse_labels": coarse_labels(test_labels)},
        ),
        "cifar-100-python/meta": {
            b"fine_label_names": [f"{colour}_{shape}".encode() for shape, colour in fine],
            b"coarse_label_names": [f"{shape}_{tone}".encode() for shape in SHAPES for tone in palette],
        },
    }


def archive_bytes(members: dict[str, object]) -> bytes:
    """A deterministic tar.gz of pickled members (bytes members are stored as they are)."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", filename="", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, obj in members.items():
            blob = obj if isinstance(obj, bytes) else pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buffer.getvalue()


def write_archive(path: str | Path, members: dict[str, object]) -> str:
    """Write the archive of `members`; return its MD5."""
    blob = archive_bytes(members)
    with atomic_path(path) as partial:
        partial.write_bytes(blob)
    return hashlib.md5(blob).hexdigest()
