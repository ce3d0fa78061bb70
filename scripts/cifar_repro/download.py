"""Fetch a dataset archive (or any file) from http(s)://, file: URL or local path, verifying its MD5.

The bytes are streamed to a temporary file and hashed on the way; only a file whose MD5 matches the
configured one is renamed into place. A size cap stops a misbehaving server from filling the disk.
"""

import hashlib
import logging
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import BinaryIO

from .atomic import atomic_path
from .errors import InputError

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


def local_source(url: str) -> Path | None:
    """The local file a `file:` URL or a plain path names (relative paths are relative to the
    working directory), or None for a network URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.netloc + parts.path))
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme and len(parts.scheme) > 1:  # one letter is a Windows drive, i.e. a path
        raise InputError(f"{url}: unsupported URL scheme {parts.scheme!r} (use http(s)://, file: or a path)")
    return Path(url)


def archive_name(url: str) -> str:
    """The file name an archive is stored under: the last component of the URL's path."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    if not name or name in (".", ".."):
        raise InputError(f"{url}: the URL does not end in a file name")
    return name


def copy_hashing(source: BinaryIO, target: BinaryIO, max_bytes: int, origin: str) -> str:
    """Copy a stream, returning its MD5; refuse more than max_bytes."""
    digest = hashlib.md5()
    copied = 0
    while chunk := source.read(CHUNK_BYTES):
        copied += len(chunk)
        if copied > max_bytes:
            raise InputError(f"{origin}: larger than the allowed {max_bytes} bytes; refusing it")
        digest.update(chunk)
        target.write(chunk)
    return digest.hexdigest()


def fetch(url: str, destination: Path, md5: str, timeout: float, max_bytes: int) -> None:
    """Download `url` to `destination` if and only if its MD5 equals `md5` (an empty `md5` verifies
    nothing and logs the MD5 instead)."""
    with atomic_path(destination) as partial:
        with open(partial, "wb") as target:
            path = local_source(url)
            if path is not None:
                if not path.is_file():
                    raise InputError(f"{url}: no such file ({path.resolve()})")
                with open(path, "rb") as source:
                    actual = copy_hashing(source, target, max_bytes, url)
            else:
                try:
                    with urllib.request.urlopen(url, timeout=timeout) as response:
                        actual = copy_hashing(response, target, max_bytes, url)
                except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                    raise InputError(f"{url}: download failed: {error}") from error
        if not md5:
            log.warning("%s: no MD5 configured, so the download is not verified; its MD5 is %s", url, actual)
        elif actual != md5.lower():
            raise InputError(
                f"{url}: MD5 mismatch: expected {md5.lower()}, got {actual} "
                "(corrupt or unexpected file; set the dataset's md5 in the config if you meant to use it)"
            )
        log.info("%s: %d bytes, MD5 %s -> %s", url, partial.stat().st_size, actual, destination)
