"""Read a CIFAR-10/100 "python version" archive into arrays, treating it as untrusted input.

The archive is never extracted to disk: the expected members are read from the tar in one pass, in
the archive's own order (looking members up by name would decompress a .tar.gz from its start again
for every member that lies behind the current position). Their pickles are loaded with an unpickler
that can only rebuild plain containers and numpy uint8 arrays (no arbitrary callables), then checked
for the layout of the official archives.
"""

import io
import logging
import pickle
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError

IMAGE_SHAPE = (3, 32, 32)
MAX_MEMBER_BYTES = 512 << 20
log = logging.getLogger(__name__)

CLASS_NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # names become folder names


@dataclass(frozen=True)
class Layout:
    """Where one dataset's pickles live in its archive and which keys hold what."""

    train_members: tuple[str, ...]
    test_member: str
    meta_member: str
    label_keys: dict[str, str]  # npz array name -> pickle key
    name_keys: dict[str, tuple[str, int]]  # npz array name -> (meta key, class count)


LAYOUTS = {
    "cifar10": Layout(
        train_members=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        test_member="cifar-10-batches-py/test_batch",
        meta_member="cifar-10-batches-py/batches.meta",
        label_keys={"labels": "labels"},
        name_keys={"label_names": ("label_names", 10)},
    ),
    "cifar100": Layout(
        train_members=("cifar-100-python/train",),
        test_member="cifar-100-python/test",
        meta_member="cifar-100-python/meta",
        label_keys={"labels": "fine_labels", "coarse_labels": "coarse_labels"},
        name_keys={
            "label_names": ("fine_label_names", 100),
            "coarse_label_names": ("coarse_label_names", 20),
        },
    ),
}
NUM_CLASSES = {dataset: layout.name_keys["label_names"][1] for dataset, layout in LAYOUTS.items()}
# coarse_labels index coarse_label_names; labels index label_names
NAMES_FOR_LABELS = {"labels": "label_names", "coarse_labels": "coarse_label_names"}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals numpy needs to rebuild an ndarray (as written by Python 2, as in
    the official archives, or by Python 3 with numpy 1.x or 2.x). Anything else is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol 2
    }

    def find_class(self, module, name):
        module = module.replace("numpy._core", "numpy.core")  # numpy 2 pickles
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def safe_unpickle(blob: bytes, origin: str):
    """Load a pickle that may only contain containers, strings, numbers and numpy arrays."""
    try:
        return _ArraysOnlyUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except Exception as error:  # any failure to parse untrusted bytes is an input error
        raise InputError(f"{origin}: not a valid CIFAR pickle: {error}") from error


def _text_keys(obj, origin: str) -> dict:
    if not isinstance(obj, dict):
        raise InputError(f"{origin}: expected a dict, found {type(obj).__name__}")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in obj.items()}


def _wanted_members(archive: tarfile.TarFile, names: set[str]) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """The members called `names`, with the bytes of those that are regular files of an allowed size
    (empty for the others, which _read_member refuses), read in one pass. Of members sharing a name
    the last wins, as with TarFile.getmember."""
    found = {}
    for member in archive:
        if member.name in names:
            readable = member.isfile() and member.size <= MAX_MEMBER_BYTES
            found[member.name] = (member, archive.extractfile(member).read() if readable else b"")
    return found


def _read_member(found: dict[str, tuple[tarfile.TarInfo, bytes]], name: str, origin: str) -> dict:
    where = f"{origin}: member {name}"
    if name not in found:
        raise InputError(f"{origin}: missing member {name} (is this the right dataset's archive?)")
    member, blob = found.pop(name)  # popped: its bytes are freed once unpickled
    if not member.isfile():
        raise InputError(f"{where} is not a regular file")
    if member.size > MAX_MEMBER_BYTES:
        raise InputError(f"{where} is {member.size} bytes, over the {MAX_MEMBER_BYTES} allowed")
    return _text_keys(safe_unpickle(blob, where), where)


def _class_names(meta: dict, key: str, count: int, where: str) -> np.ndarray:
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != count:
        raise InputError(f"{where}: {key} must list {count} class names")
    names = [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    bad = [n for n in names if not isinstance(n, str) or not CLASS_NAME.match(n)]
    if bad:
        raise InputError(f"{where}: {key} has names unusable as folder names: {bad[:3]}")
    if len(set(names)) != count:
        raise InputError(f"{where}: {key} has duplicate names")
    return np.array(names)


def _batch_arrays(batch: dict, layout: Layout, names: dict[str, np.ndarray], where: str) -> dict:
    data = batch.get("data")
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != np.prod(IMAGE_SHAPE)
    ):
        described = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise InputError(f"{where}: data must be a uint8 array of shape (N, 3072), found {described}")
    arrays = {"data": data.reshape((-1,) + IMAGE_SHAPE)}
    for array_name, key in layout.label_keys.items():
        labels = batch.get(key)
        try:
            labels = np.asarray(labels, dtype=np.int64)
        except (TypeError, ValueError):
            raise InputError(f"{where}: {key} must be a list of integers") from None
        if labels.shape != (len(data),):
            raise InputError(f"{where}: {key} has {labels.size} entries for {len(data)} images")
        count = len(names[NAMES_FOR_LABELS[array_name]])
        if labels.size and (labels.min() < 0 or labels.max() >= count):
            raise InputError(f"{where}: {key} outside 0..{count - 1}")
        arrays[array_name] = labels
    return arrays


def read_archive(path: str | Path, dataset: str) -> dict[str, dict[str, np.ndarray]]:
    """Arrays of both splits: {"train": {...}, "test": {...}}, each with data (N,3,32,32) uint8 RGB,
    labels (+ coarse_labels for CIFAR-100) and the class names. Training batches are concatenated
    in archive order, so an image's index is its position in the archive."""
    if dataset not in LAYOUTS:
        raise InputError(f"unknown dataset {dataset!r}; known: {', '.join(LAYOUTS)}")
    layout = LAYOUTS[dataset]
    origin = str(path)
    try:
        archive = tarfile.open(path, "r:*")  # noqa: SIM115 -- closed by the with below
    except (tarfile.TarError, OSError, EOFError) as error:
        raise InputError(f"{origin}: not a readable tar(.gz) archive: {error}") from error
    try:
        with archive:
            found = _wanted_members(archive, {layout.meta_member, *layout.train_members, layout.test_member})
            meta = _read_member(found, layout.meta_member, origin)
            where = f"{origin}: member {layout.meta_member}"
            names = {
                array_name: _class_names(meta, key, count, where)
                for array_name, (key, count) in layout.name_keys.items()
            }
            splits = {}
            for split, members in (("train", layout.train_members), ("test", (layout.test_member,))):
                batches = [
                    _batch_arrays(_read_member(found, m, origin), layout, names, f"{origin}: member {m}")
                    for m in members
                ]
                splits[split] = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
                splits[split].update(names)
    except (tarfile.TarError, OSError, EOFError, ValueError) as error:  # truncated or corrupt gzip/tar
        raise InputError(f"{origin}: corrupt archive: {error}") from error
    for split, arrays in splits.items():
        if len(arrays["data"]) == 0:
            raise InputError(f"{origin}: the {split} split has no images")
    return splits


def save_arrays(arrays: dict[str, np.ndarray], path: str | Path) -> None:
    # a file object stops numpy appending ".npz" to the name
    with atomic_path(path) as partial, open(partial, "wb") as target:
        np.savez(target, **arrays)


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as npz:
        return dict(npz)
