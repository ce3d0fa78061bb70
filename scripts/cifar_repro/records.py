"""Pack one split's PNGs into an indexed RecordIO file (.rec + .idx) with MXNet's own im2rec.py.

im2rec.py runs in pass-through mode, so each record holds the PNG bytes unchanged. It writes beside
its .lst and reports unreadable images or malformed lines only by printing them, so it runs in a
private folder and the result is checked (one record per .lst line, keyed by the line's index)
before the .rec/.idx are moved into place.
"""

import importlib.util
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .atomic import atomic_path
from .errors import InputError, ToolError

log = logging.getLogger(__name__)


def im2rec_script() -> Path:
    """The im2rec.py shipped in the installed mxnet wheel, found without importing mxnet (about a
    second of start-up that only im2rec.py's own process needs)."""
    spec = importlib.util.find_spec("mxnet")
    if spec is None or spec.origin is None:
        raise ToolError("mxnet is not installed, so there is no im2rec.py to pack the images with")
    return Path(spec.origin).parent / "tools" / "im2rec.py"


def record_keys(path: str | Path) -> list[int]:
    """The leading integer of each line: the image index of a .lst, the record key of an .idx."""
    return [int(line.split("\t", 1)[0]) for line in Path(path).read_text().splitlines() if line]


def check_packed(lst_path: Path, idx_path: Path) -> int:
    """Every .lst entry has its record, under its own index; return the record count."""
    expected, packed = record_keys(lst_path), record_keys(idx_path)
    if packed != expected:
        missing = sorted(set(expected) - set(packed))
        raise InputError(
            f"{lst_path}: im2rec packed {len(packed)} of {len(expected)} images"
            + (f"; missing indices {missing[:10]}" if missing else "; record keys differ from the .lst")
        )
    return len(packed)


def pack(
    lst_path: str | Path, images_dir: str | Path, rec_path: str | Path, idx_path: str | Path, threads: int
) -> int:
    lst_path, rec_path, idx_path = Path(lst_path), Path(rec_path), Path(idx_path)
    with tempfile.TemporaryDirectory(dir=rec_path.parent, prefix=".im2rec-") as work:
        prefix = Path(work) / "split"
        os.symlink(lst_path.resolve(), prefix.with_suffix(".lst"))
        command = [
            sys.executable,
            str(im2rec_script()),
            "--pass-through",
            "--num-thread",
            str(threads),
            str(prefix),
            str(Path(images_dir).resolve()),
        ]
        log.info("running %s", " ".join(command))
        result = subprocess.run(command, capture_output=True, text=True)
        output = (result.stdout + result.stderr).splitlines()
        for line in output:
            log.info("im2rec: %s", line)
        if result.returncode != 0:
            reasons = [line for line in output if "error" in line.lower()]
            raise InputError(
                f"{lst_path}: im2rec.py failed with exit code {result.returncode}"
                + (f": {reasons[0]}" if reasons else "")
            )
        count = check_packed(lst_path, prefix.with_suffix(".idx"))
        for built, final in ((prefix.with_suffix(".rec"), rec_path), (prefix.with_suffix(".idx"), idx_path)):
            with atomic_path(final) as partial:
                os.replace(built, partial)
    return count
