"""Bad input fails with a message naming the input and what is wrong, exits non-zero, and leaves no
partial file where a finished one is expected."""

import gzip
import os
import pickle
import tarfile

import numpy as np
import pytest
from conftest import http_config, run_snakemake

from cifar_repro import archive, download, records, synthetic
from cifar_repro.errors import InputError


def leftover_files(folder):
    return (
        sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        if folder.exists()
        else []
    )


@pytest.mark.workflow
def test_md5_mismatch_keeps_nothing(tmp_path, archives, http_base_url):
    config = http_config(archives, http_base_url)
    config["datasets"]["cifar10"]["md5"] = "0" * 32
    result = run_snakemake(tmp_path, "results/cifar10/arrays/train.npz", config=config)
    assert result.returncode != 0
    assert f"{http_base_url}/cifar-10-python.tar.gz: MD5 mismatch: expected {'0' * 32}" in result.stderr
    assert leftover_files(tmp_path / "results" / "cifar10") == []
    log = tmp_path / "results" / "logs" / "download_archive" / "cifar10" / "cifar-10-python.tar.gz.log"
    last_line = log.read_text().splitlines()[-1]  # one line ends the rule's log, after the traceback
    assert "ERROR download_archive failed: " in last_line and "MD5 mismatch" in last_line


@pytest.mark.workflow
def test_unreachable_url_names_the_url(tmp_path, archives, http_base_url):
    config = http_config(archives, http_base_url)
    config["datasets"]["cifar10"]["url"] = f"{http_base_url}/no-such-archive.tar.gz"
    result = run_snakemake(tmp_path, "results/cifar10/arrays/train.npz", config=config)
    assert result.returncode != 0
    assert f"{http_base_url}/no-such-archive.tar.gz: download failed: HTTP Error 404" in result.stderr
    assert leftover_files(tmp_path / "results" / "cifar10") == []


@pytest.mark.workflow
@pytest.mark.parametrize(
    "field, value, complaint",
    [
        ("url", "ftp://example.org/cifar-10-python.tar.gz", "does not match"),
        ("md5", "not-an-md5", "does not match"),
        ("colour", "blue", "Additional properties are not allowed"),
    ],
)
def test_config_is_validated_before_anything_runs(tmp_path, archives, http_base_url, field, value, complaint):
    config = http_config(archives, http_base_url)
    config["datasets"]["cifar10"][field] = value
    result = run_snakemake(tmp_path, config=config)
    assert result.returncode != 0
    assert complaint in result.stderr and repr(value) in result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_schema_fills_defaults(tmp_path):
    """An empty config means the official archives: the dry run plans their download."""
    result = run_snakemake(
        tmp_path, "--dry-run", "results/cifar10/download/cifar-10-python.tar.gz", config={}
    )
    assert result.returncode == 0, result.stderr
    assert "results/cifar10/download/cifar-10-python.tar.gz" in result.stdout


class _RunsCode:
    """A pickle payload that would create a file if unpickled unsafely."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def archive_with(members: dict, tmp_path, name="cifar-10-python.tar.gz"):
    path = tmp_path / name
    md5 = synthetic.write_archive(path, members)
    return path, md5


@pytest.mark.workflow
def test_code_in_a_pickle_is_refused_not_run(tmp_path):
    marker = tmp_path / "pwned"
    members = synthetic.archive_members("cifar10", 1, 1, seed=0, noise=0)
    members["cifar-10-batches-py/batches.meta"] = {b"label_names": _RunsCode(marker)}
    path, md5 = archive_with(members, tmp_path)
    workdir = tmp_path / "work"
    config = {
        "datasets": {"cifar10": {"url": str(path), "md5": md5}, "cifar100": {"url": str(path), "md5": md5}}
    }
    result = run_snakemake(workdir, "results/cifar10/arrays/train.npz", config=config)
    assert result.returncode != 0
    assert (
        "member cifar-10-batches-py/batches.meta: not a valid CIFAR pickle: refusing to load global"
        in result.stderr
    )
    assert not marker.exists()
    assert (
        not (workdir / "results" / "cifar10" / "arrays").exists()
        or leftover_files(workdir / "results" / "cifar10" / "arrays") == []
    )


def cifar10_members():
    return synthetic.archive_members("cifar10", 2, 1, seed=0, noise=0)


def broken(change):
    members = cifar10_members()
    change(members)
    return members


@pytest.mark.parametrize(
    "members, message",
    [
        (
            broken(lambda m: m.pop("cifar-10-batches-py/data_batch_3")),
            "missing member cifar-10-batches-py/data_batch_3",
        ),
        (
            broken(
                lambda m: m["cifar-10-batches-py/test_batch"].update(
                    {b"data": np.zeros((2, 3072), np.float32)}
                )
            ),
            "member cifar-10-batches-py/test_batch: data must be a uint8 array of shape (N, 3072), "
            "found float32",
        ),
        (
            broken(
                lambda m: m["cifar-10-batches-py/test_batch"].update({b"data": np.zeros((2, 1024), np.uint8)})
            ),
            "data must be a uint8 array of shape (N, 3072), found uint8 (2, 1024)",
        ),
        (
            broken(lambda m: m["cifar-10-batches-py/test_batch"][b"labels"].__setitem__(0, 10)),
            "labels outside 0..9",
        ),
        (
            broken(lambda m: m["cifar-10-batches-py/test_batch"][b"labels"].pop()),
            "labels has 9 entries for 10 images",
        ),
        (
            broken(
                lambda m: m["cifar-10-batches-py/batches.meta"][b"label_names"].__setitem__(0, b"../../etc")
            ),
            "label_names has names unusable as folder names: ['../../etc']",
        ),
        (
            broken(lambda m: m["cifar-10-batches-py/batches.meta"][b"label_names"].pop()),
            "label_names must list 10",
        ),
        (
            broken(lambda m: m.update({"cifar-10-batches-py/test_batch": [1, 2, 3]})),
            "expected a dict, found list",
        ),
        (
            broken(lambda m: m.update({"cifar-10-batches-py/test_batch": b"\x80\x02garbage"})),
            "not a valid CIFAR pickle",
        ),
    ],
)
def test_malformed_archives_are_named_and_explained(tmp_path, members, message):
    path, _ = archive_with(members, tmp_path)
    with pytest.raises(InputError) as error:
        archive.read_archive(path, "cifar10")
    assert str(path) in str(error.value) and message in str(error.value)


def test_truncated_and_non_tar_archives(tmp_path):
    path, _ = archive_with(cifar10_members(), tmp_path)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=r"truncated\.tar\.gz: (corrupt archive|not a readable)"):
        archive.read_archive(truncated, "cifar10")
    html = tmp_path / "page.tar.gz"
    html.write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(InputError, match=r"page\.tar\.gz: not a readable tar"):
        archive.read_archive(html, "cifar10")


def test_a_directory_or_link_in_place_of_a_member_is_refused(tmp_path):
    path = tmp_path / "links.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        link = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(InputError, match="batches.meta is not a regular file"):
        archive.read_archive(path, "cifar10")


def test_an_oversized_member_is_refused_before_reading(tmp_path, monkeypatch):
    path, _ = archive_with(cifar10_members(), tmp_path)
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 100)
    with pytest.raises(InputError, match="over the 100 allowed"):
        archive.read_archive(path, "cifar10")


def test_numpy_pickles_of_any_protocol_load():
    array = np.arange(12, dtype=np.uint8).reshape(2, 6)
    for protocol in (2, 3, 4, 5):
        loaded = archive.safe_unpickle(pickle.dumps({b"data": array}, protocol=protocol), "x")
        np.testing.assert_array_equal(loaded[b"data"], array)


def test_download_size_cap_and_missing_local_file(tmp_path):
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 1000)
    target = tmp_path / "out" / "big.bin"
    with pytest.raises(InputError, match="larger than the allowed 999 bytes"):
        download.fetch(str(source), target, "0" * 32, timeout=5, max_bytes=999)
    with pytest.raises(InputError, match=r"file:.*nowhere\.tar\.gz: no such file"):
        download.fetch(f"file://{tmp_path}/nowhere.tar.gz", target, "0" * 32, timeout=5, max_bytes=999)
    assert leftover_files(tmp_path / "out") == []


def test_download_from_file_url_and_plain_path(tmp_path):
    source = tmp_path / "a b.bin"
    source.write_bytes(b"cifar")
    md5 = "f5e79fd55db721a19cf28aa3ea5f1573"  # of b"cifar"
    for url in (f"file://{tmp_path}/a%20b.bin", str(source)):
        target = tmp_path / "out" / "a.bin"
        download.fetch(url, target, md5, timeout=5, max_bytes=100)
        assert target.read_bytes() == b"cifar"
        target.unlink()


def test_url_names():
    assert download.archive_name("https://host/~kriz/cifar-10-python.tar.gz?x=1") == "cifar-10-python.tar.gz"
    assert download.local_source("file:results/a.tar.gz").as_posix() == "results/a.tar.gz"
    assert download.local_source("https://host/a.tar.gz") is None
    with pytest.raises(InputError, match="unsupported URL scheme 'ftp'"):
        download.local_source("ftp://host/a.tar.gz")
    with pytest.raises(InputError, match="does not end in a file name"):
        download.archive_name("https://host/")


@pytest.mark.parametrize(
    "threads, message",
    [
        (2, r"train\.lst: im2rec packed 2 of 3 images; missing indices \[1\]"),  # im2rec skips it silently
        (
            1,
            r"train\.lst: im2rec.py failed with exit code 1: pack_img error: cat/00001.png",
        ),  # im2rec crashes
    ],
)
def test_im2rec_losing_an_image_fails_the_packing(tmp_path, threads, message):
    images = tmp_path / "images"
    (images / "cat").mkdir(parents=True)
    lines = []
    for index in range(3):
        (images / "cat" / f"{index:05d}.png").write_bytes(b"\x89PNG fake")
        lines.append(f"{index}\t3\tcat/{index:05d}.png")
    (images / "cat" / "00001.png").unlink()
    lst = tmp_path / "train.lst"
    lst.write_text("\n".join(lines) + "\n")
    rec, idx = tmp_path / "rec" / "train.rec", tmp_path / "rec" / "train.idx"
    rec.parent.mkdir()
    with pytest.raises(InputError, match=message):
        records.pack(lst, images, rec, idx, threads=threads)
    assert leftover_files(rec.parent) == []
