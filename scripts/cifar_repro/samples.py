"""Figure of the first images of a training split, each titled with its class name; `figures.save_figure`
writes it."""

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def first_samples(arrays: dict[str, np.ndarray], count: int) -> tuple[np.ndarray, list[str]]:
    """The first `count` images (H, W, 3) and their class names, in archive order."""
    images = arrays["data"][:count].transpose(0, 2, 3, 1)
    names = [str(arrays["label_names"][label]) for label in arrays["labels"][:count]]
    return images, names


def plot_grid(images: np.ndarray, names: list[str], columns: int, title: str) -> Figure:
    """The images in rows of `columns`, each at its native pixels and titled with its class name."""
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows + 0.5), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")  # also the cells the last row leaves empty
    for axis, image, name in zip(axes.flat, images, names, strict=False):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(name, fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
