"""Export one split's arrays as PNG files and an MXNet .lst that im2rec packs.

Layout: <images>/<class name>/<index:05d>.png, where index is the image's position in the archive,
and <images>.lst with lines "index<TAB>label<TAB><class name>/<index:05d>.png" (paths relative to
<images>, im2rec's root). Labels come from the pickles, never from folder order. PNG is lossless, so
the pixels in the .rec are exactly the archive's.
"""

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_path
from .errors import ToolError

log = logging.getLogger(__name__)

IMAGES_PER_TASK = 1000


def relative_image_path(index: int, class_name: str) -> str:
    return f"{class_name}/{index:05d}.png"


def lst_lines(labels: np.ndarray, label_names: np.ndarray) -> list[str]:
    """The .lst of a split: one line per image, in archive order."""
    return [
        f"{index}\t{label}\t{relative_image_path(index, label_names[label])}"
        for index, label in enumerate(labels.tolist())
    ]


def encode_png(image_chw: np.ndarray) -> bytes:
    """PNG bytes of a (3, H, W) RGB image (OpenCV writes BGR)."""
    ok, png = cv2.imencode(".png", np.ascontiguousarray(image_chw.transpose(1, 2, 0)[:, :, ::-1]))
    if not ok:
        raise ToolError("OpenCV failed to encode a PNG")
    return png.tobytes()


def _encode_pngs(images_chw: np.ndarray) -> list[bytes]:
    return [encode_png(image) for image in images_chw]


def export_split(
    arrays: dict[str, np.ndarray], images_dir: str | Path, lst_path: str | Path, threads: int = 1
) -> int:
    """Write every image and the .lst; return the number of images.

    `threads` threads encode blocks of images (OpenCV's encoder releases the GIL) while this thread
    writes the files in order: creating files from two threads at once is slower on ext4, not faster."""
    names, data = arrays["label_names"], arrays["data"]
    labels = arrays["labels"].tolist()
    with atomic_path(images_dir) as partial_dir:
        for name in names:
            (partial_dir / name).mkdir(parents=True)
        paths = [
            f"{partial_dir}/{relative_image_path(index, names[label])}" for index, label in enumerate(labels)
        ]
        starts = range(0, len(paths), IMAGES_PER_TASK)
        with ThreadPoolExecutor(threads) as pool:
            blocks = pool.map(_encode_pngs, (data[start : start + IMAGES_PER_TASK] for start in starts))
            for start, pngs in zip(starts, blocks, strict=True):
                for path, png in zip(paths[start : start + IMAGES_PER_TASK], pngs, strict=True):
                    with open(path, "wb") as target:
                        target.write(png)
    with atomic_path(lst_path) as partial_lst:
        partial_lst.write_text("\n".join(lst_lines(arrays["labels"], names)) + "\n")
    return len(arrays["labels"])
