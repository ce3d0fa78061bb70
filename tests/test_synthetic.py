"""The demo's embedded data: reproducible to the byte (its MD5 is pinned in config/demo.yaml) and
learnable (classes differ in what they show, not only in their labels)."""

import hashlib
import pickle
import tarfile

import numpy as np
import yaml
from conftest import REPO

from cifar_repro import synthetic


def test_demo_archives_match_the_md5_pinned_in_demo_config(tmp_path):
    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    for dataset, options in demo["synthetic_archives"].items():
        members = synthetic.archive_members(
            dataset, options["train_per_class"], options["test_per_class"], options["seed"], options["noise"]
        )
        md5 = synthetic.write_archive(tmp_path / f"{dataset}.tar.gz", members)
        assert md5 == demo["datasets"][dataset]["md5"], f"regenerate {dataset} and update config/demo.yaml"


def test_same_arguments_same_bytes_other_seed_other_bytes(tmp_path):
    def archive(seed, name):
        path = tmp_path / name
        synthetic.write_archive(path, synthetic.archive_members("cifar10", 3, 1, seed, 30.0))
        return hashlib.md5(path.read_bytes()).hexdigest()

    assert archive(4, "a.tar.gz") == archive(4, "b.tar.gz") != archive(5, "c.tar.gz")


def test_classes_are_separable_by_their_pixels():
    """A nearest-class-mean classifier on raw pixels beats chance by far: the set is learnable."""
    rng = np.random.default_rng(0)
    train, train_labels = synthetic.make_split("cifar10", 40, rng, noise=30.0)
    test, test_labels = synthetic.make_split("cifar10", 10, rng, noise=30.0)
    centroids = np.stack([train[train_labels == k].mean(axis=0) for k in range(10)])
    distances = ((test[:, None, :].astype(np.float64) - centroids[None]) ** 2).sum(axis=2)
    accuracy = (distances.argmin(axis=1) == test_labels).mean()
    assert accuracy > 0.3  # chance is 0.1


def test_cifar100_layout_has_20_coarse_groups_of_5():
    members = synthetic.archive_members("cifar100", 1, 1, seed=0, noise=30.0)
    train = members["cifar-100-python/train"]
    fine, coarse = np.asarray(train[b"fine_labels"]), np.asarray(train[b"coarse_labels"])
    assert sorted(set(fine)) == list(range(100)) and sorted(set(coarse)) == list(range(20))
    for group in range(20):
        assert len(set(fine[coarse == group])) == 5
    meta = members["cifar-100-python/meta"]
    assert len(meta[b"fine_label_names"]) == 100 and len(meta[b"coarse_label_names"]) == 20


def test_generated_pickles_have_the_official_format(archives):
    """Protocol 2, bytes keys, as in the official archives (read with encoding="bytes")."""
    path, _, _ = archives["cifar10"]
    with tarfile.open(path) as tar:
        blob = tar.extractfile("cifar-10-batches-py/data_batch_1").read()
    assert blob[:2] == b"\x80\x02"
    assert set(pickle.loads(blob, encoding="bytes")) == {b"batch_label", b"labels", b"data", b"filenames"}
