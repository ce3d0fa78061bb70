"""Figure of the first images of a training split, each titled with its class name."""

import argparse
import logging
import sys

import matplotlib

matplotlib.use("Agg")  # no display on servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from atomic import atomic_path  # noqa: E402
from cifar_archive import load_arrays  # noqa: E402
from cli import run  # noqa: E402

log = logging.getLogger("cifar-repro")


def first_samples(arrays: dict[str, np.ndarray], count: int) -> tuple[np.ndarray, list[str]]:
    """The first `count` images (H, W, 3) and their class names, in archive order."""
    images = arrays["data"][:count].transpose(0, 2, 3, 1)
    names = [str(arrays["label_names"][label]) for label in arrays["labels"][:count]]
    return images, names


def plot_grid(images: np.ndarray, names: list[str], columns: int, title: str):
    rows = -(-len(images) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows + 0.5), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, name in zip(axes.flat, images, names):
        axis.imshow(image, interpolation="nearest")
        axis.set_title(name, fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def _main(args: argparse.Namespace) -> None:
    images, names = first_samples(load_arrays(args.arrays), args.rows * args.columns)
    log.info("first %d training images: %s", len(names), ", ".join(names))
    figure = plot_grid(images, names, args.columns, f"{args.dataset}: first {len(names)} training images")
    with atomic_path(args.output) as partial:
        figure.savefig(partial, format=args.output.rsplit(".", 1)[-1], dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arrays", required=True, help=".npz of the training split")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--columns", type=int, default=10)
    parser.add_argument("--output", required=True, help=".png or .svg")
    return run(_main, parser, argv)


if __name__ == "__main__":
    sys.exit(main())
