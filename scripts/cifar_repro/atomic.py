"""Write outputs under a temporary name and rename them into place only when complete, so an
interrupted or failed step never leaves a partial file where a finished one is expected."""

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (file or directory); rename it to `path` on success,
    remove it on any error."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_sibling(final)
    try:
        yield temporary
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(temporary, final)
    finally:
        if temporary.is_dir():
            shutil.rmtree(temporary)
        elif temporary.exists():
            temporary.unlink()


def hard_link(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """`destination` as a second name of `source` (no copy), replacing any older file of that name."""
    with atomic_path(destination) as partial:
        os.link(source, partial)
