"""End to end: the real `snakemake` CLI downloads generated archives from a loopback HTTP server and
builds every data artefact; each artefact is checked against the archive's own pickles."""

import hashlib

import cv2
import mxnet as mx
import numpy as np
import pytest
from conftest import http_config, run_snakemake, scheduled_rules

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def built(tmp_path_factory, archives, http_base_url):
    """A workdir in which `snakemake --cores 2` (rule all) has run."""
    workdir = tmp_path_factory.mktemp("chain")
    result = run_snakemake(workdir, config=http_config(archives, http_base_url))
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "results"


def expected_split(members, dataset, split):
    """data (N,3,32,32), labels, coarse labels (or None), names, straight from the pickles."""
    if dataset == "cifar10":
        names = [n.decode() for n in members["cifar-10-batches-py/batches.meta"][b"label_names"]]
        keys = (
            [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
            if split == "train"
            else ["cifar-10-batches-py/test_batch"]
        )
        batches = [members[k] for k in keys]
        labels = np.concatenate([b[b"labels"] for b in batches])
        coarse = None
    else:
        names = [n.decode() for n in members["cifar-100-python/meta"][b"fine_label_names"]]
        batches = [members[f"cifar-100-python/{split}"]]
        labels = np.asarray(batches[0][b"fine_labels"])
        coarse = np.asarray(batches[0][b"coarse_labels"])
    data = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
    return data, labels, coarse, names


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_download_keeps_the_verified_archive(built, archives, dataset):
    path, md5, _ = archives[dataset]
    downloaded = built / dataset / "download" / path.name
    assert hashlib.md5(downloaded.read_bytes()).hexdigest() == md5


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_arrays_equal_the_pickles(built, archives, dataset, split):
    data, labels, coarse, names = expected_split(archives[dataset][2], dataset, split)
    with np.load(built / dataset / "arrays" / f"{split}.npz", allow_pickle=False) as npz:
        assert npz["data"].dtype == np.uint8 and npz["data"].shape == data.shape
        np.testing.assert_array_equal(npz["data"], data)
        np.testing.assert_array_equal(npz["labels"], labels)
        assert list(npz["label_names"]) == names
        if coarse is not None:
            np.testing.assert_array_equal(npz["coarse_labels"], coarse)
            assert len(npz["coarse_label_names"]) == 20


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_png_export_and_lst(built, archives, dataset, split):
    data, labels, _, names = expected_split(archives[dataset][2], dataset, split)
    images = built / dataset / "images" / split
    lines = (built / dataset / "images" / f"{split}.lst").read_text().splitlines()
    assert len(lines) == len(data) == len(list(images.glob("*/*.png")))
    for index, line in enumerate(lines):
        key, label, relative = line.split("\t")
        assert (int(key), int(label)) == (index, labels[index])
        assert relative == f"{names[labels[index]]}/{index:05d}.png"
        rgb = cv2.imread(str(images / relative), cv2.IMREAD_COLOR)[:, :, ::-1]
        np.testing.assert_array_equal(rgb.transpose(2, 0, 1), data[index])


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_records_hold_exact_pixels_under_their_index(built, archives, dataset, split):
    data, labels, _, _ = expected_split(archives[dataset][2], dataset, split)
    rec = built / dataset / "rec"
    record = mx.recordio.MXIndexedRecordIO(str(rec / f"{split}.idx"), str(rec / f"{split}.rec"), "r")
    assert sorted(record.keys) == list(range(len(data)))
    for index in range(len(data)):
        header, png = mx.recordio.unpack(record.read_idx(index))
        assert (header.id, header.label) == (index, labels[index])
        assert png[:8] == b"\x89PNG\r\n\x1a\n"  # stored as exported, not re-encoded
        bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(bgr[:, :, ::-1].transpose(2, 0, 1), data[index])
    record.close()


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_mean_images(built, archives, dataset):
    data = expected_split(archives[dataset][2], dataset, "train")[0].astype(np.float64)
    mean32 = mx.nd.load(str(built / dataset / "mean_32x32.bin"))
    assert list(mean32) == ["mean_img"]
    np.testing.assert_allclose(mean32["mean_img"].asnumpy(), data.mean(axis=0), rtol=1e-6)
    mean28 = mx.nd.load(str(built / dataset / "mean_28x28.bin"))["mean_img"].asnumpy()
    every_crop = [data[:, :, top : top + 28, left : left + 28] for top in range(5) for left in range(5)]
    assert mean28.dtype == np.float32 and mean28.shape == (3, 28, 28)
    np.testing.assert_allclose(mean28, np.mean(every_crop, axis=(0, 1)), rtol=1e-5)


def test_image_record_iter_reads_records_and_subtracts_the_mean(built, archives):
    """MXNet's own loader takes the .rec and mean file: its output is pixels minus mean, in RGB."""
    data, labels, _, _ = expected_split(archives["cifar10"][2], "cifar10", "train")
    root = built / "cifar10"
    loader = mx.io.ImageRecordIter(
        path_imgrec=str(root / "rec" / "train.rec"),
        path_imgidx=str(root / "rec" / "train.idx"),
        mean_img=str(root / "mean_32x32.bin"),
        data_shape=(3, 32, 32),
        batch_size=8,
        shuffle=False,
    )
    batch = next(iter(loader))
    mean = mx.nd.load(str(root / "mean_32x32.bin"))["mean_img"].asnumpy()
    np.testing.assert_allclose(batch.data[0].asnumpy(), data[:8] - mean, atol=1e-4)
    np.testing.assert_array_equal(batch.label[0].asnumpy(), labels[:8])
    cropped = mx.io.ImageRecordIter(
        path_imgrec=str(root / "rec" / "train.rec"),
        mean_img=str(root / "mean_28x28.bin"),
        data_shape=(3, 28, 28),
        batch_size=8,
        rand_crop=True,
        rand_mirror=True,
    )
    assert next(iter(cropped)).data[0].shape == (8, 3, 28, 28)


@pytest.mark.parametrize("dataset", ["cifar10", "cifar100"])
def test_samples_figure_and_its_log(built, archives, dataset):
    _, labels, _, names = expected_split(archives[dataset][2], dataset, "train")
    figure = cv2.imread(str(built / "figures" / f"{dataset}_samples.png"))
    assert figure is not None and figure.shape[0] > 200 and figure.shape[1] > 800
    first = ", ".join(names[k] for k in labels[:20])
    assert first in (built / "logs" / "plot_samples" / f"{dataset}.log").read_text()


def test_every_rule_logged_and_nothing_left_to_do(built, archives, http_base_url):
    logs = {
        p.parent.name if p.parent.name not in ("cifar10", "cifar100") else p.parent.parent.name
        for p in (built / "logs").rglob("*.log")
    }
    assert logs == {
        "download_archive",
        "unpack_arrays",
        "export_images",
        "pack_records",
        "mean_image",
        "plot_samples",
    }
    assert not list(built.rglob(".*partial*")), "temporary files left behind"
    dry_run = run_snakemake(built.parent, "--dry-run")
    assert dry_run.returncode == 0 and "Nothing to be done" in dry_run.stdout + dry_run.stderr


def test_one_figure_builds_only_its_own_chain(tmp_path, archives, http_base_url):
    result = run_snakemake(
        tmp_path,
        "--dry-run",
        "results/figures/cifar10_samples.png",
        config=http_config(archives, http_base_url),
    )
    assert result.returncode == 0, result.stderr
    assert scheduled_rules(result.stdout) == {"download_archive": 1, "unpack_arrays": 1, "plot_samples": 1}


def test_any_mean_image_size_is_a_target(tmp_path, archives, http_base_url):
    target = "results/cifar10/mean_24x20.bin"
    result = run_snakemake(tmp_path, target, config=http_config(archives, http_base_url))
    assert result.returncode == 0, result.stderr[-2000:]
    assert mx.nd.load(str(tmp_path / target))["mean_img"].shape == (3, 24, 20)
    assert not (tmp_path / "results" / "cifar10" / "images").exists()
