"""Write outputs under a temporary name and rename them into place only when complete, so an
interrupted or failed step never leaves a partial file where a finished one is expected."""

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

PARTIAL = ".{name}.partial-{pid}"


def _temporary_sibling(path: Path) -> Path:
    return path.with_name(PARTIAL.format(name=path.name, pid=os.getpid()))


def remove_partials(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files and folders that writers killed mid-write left in `folder` and
    below (call it only where no other writer can be at work); return them."""
    found = sorted(Path(folder).rglob(PARTIAL.format(name="*", pid="*")))
    for path in found:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return found


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
