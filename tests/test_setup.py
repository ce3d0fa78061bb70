"""The set-up's own logic: the pinned environments agree, and the CUDA libraries of the GPU variant are
wired into the venv and the conda env."""

import importlib.util
import os
import re
import subprocess
import venv

import pytest
import yaml
from conftest import REPO

spec = importlib.util.spec_from_file_location("wire_cuda_libraries", REPO / "envs" / "wire_cuda_libraries.py")
wire = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wire)


def test_library_block_is_added_once_and_replaced_on_rerun():
    activate = "deactivate () {\n  :\n}\nexport PATH\n"
    first = wire.with_library_block(activate, ["/v/nvidia/cudnn/lib", "/v/nvidia/cublas/lib"])
    assert first.startswith(activate)
    assert 'export LD_LIBRARY_PATH="/v/nvidia/cudnn/lib:/v/nvidia/cublas/lib${LD_LIBRARY_PATH:+:' in first
    second = wire.with_library_block(first, ["/w/nvidia/nccl/lib"])
    assert second.count(wire.BEGIN) == 1 and "/v/nvidia" not in second and "/w/nvidia/nccl/lib" in second


def test_library_dirs_are_the_nvidia_package_lib_folders(tmp_path):
    for package in ("cudnn", "cublas"):
        (tmp_path / "nvidia" / package / "lib").mkdir(parents=True)
    (tmp_path / "nvidia" / "__init__.py").write_text("")
    assert wire.cuda_library_dirs(tmp_path) == [
        str(tmp_path / "nvidia" / p / "lib") for p in ("cublas", "cudnn")
    ]


def locked_versions(lock_file: str) -> dict[str, str]:
    """name -> version of every package a uv/pip-compile lock file pins."""
    pins = (line.split(" ", 1)[0] for line in (REPO / "envs" / lock_file).read_text().splitlines())
    return dict(pin.split("==") for pin in pins if "==" in pin)


def conda_env_pins(env_file: str) -> dict[str, str]:
    """name -> version of the pip and conda packages a conda env file pins (extras dropped)."""
    dependencies = yaml.safe_load((REPO / "envs" / env_file).read_text())["dependencies"]
    pip = [spec for d in dependencies if isinstance(d, dict) for spec in d["pip"]]
    conda = [d.replace("=", "==", 1) for d in dependencies if isinstance(d, str) and "=" in d]
    pins = (spec.split("==") for spec in [*pip, *conda] if not spec.startswith("python=="))
    # conda-forge splits matplotlib; matplotlib-base is the same release without the Qt backend
    return {re.sub(r"\[.*\]", "", name).removesuffix("-base"): version for name, version in pins}


@pytest.mark.parametrize("env_file", sorted(p.name for p in (REPO / "envs").glob("*.yaml")))
def test_conda_envs_pin_the_versions_of_the_pip_lock_files(env_file):
    lock = locked_versions("requirements-cu112.lock.txt" if "cu112" in env_file else "requirements.lock.txt")
    pins = conda_env_pins(env_file)
    assert pins and {name: lock.get(name) for name in pins} == pins


def test_gpu_conda_env_carries_every_package_the_gpu_requirements_add():
    added = [
        line.split("==")[0]
        for line in (REPO / "envs" / "requirements-cu112.txt").read_text().splitlines()
        if "==" in line
    ]
    assert "mxnet-cu112" in added and any(name.startswith("nvidia-cudnn") for name in added)
    assert set(added) <= set(conda_env_pins("train-cu112.yaml"))


def run_post_deploy(tmp_path, library_packages):
    """Snakemake's post-deploy step for the GPU env, on a fresh venv standing in for the conda env."""
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    site_packages = next(env.glob("lib/python*/site-packages"))
    for package in library_packages:
        (site_packages / "nvidia" / package / "lib").mkdir(parents=True)
    environ = {**os.environ, "PATH": f"{env / 'bin'}:{os.environ['PATH']}", "CONDA_PREFIX": str(env)}
    result = subprocess.run(
        ["bash", str(REPO / "envs" / "train-cu112.post-deploy.sh")],
        env=environ,
        capture_output=True,
        text=True,
    )
    return result, env, site_packages


def test_gpu_env_activation_puts_the_cuda_libraries_on_the_loader_path(tmp_path):
    result, env, site_packages = run_post_deploy(tmp_path, ["cudnn", "cublas"])
    assert result.returncode == 0, result.stderr
    hook = env / "etc" / "conda" / "activate.d" / "cifar-repro-cuda-libraries.sh"
    sourced = subprocess.run(
        ["bash", "-c", f"LD_LIBRARY_PATH=/opt/x; source {hook}; echo $LD_LIBRARY_PATH"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    libs = [str(site_packages / "nvidia" / package / "lib") for package in ("cublas", "cudnn")]
    assert sourced.stdout.strip() == ":".join([*libs, "/opt/x"])


def test_gpu_env_without_cuda_libraries_fails_the_deployment(tmp_path):
    result, env, _ = run_post_deploy(tmp_path, [])
    assert result.returncode != 0
    assert "no nvidia/*/lib folders" in result.stderr
    assert not (env / "etc" / "conda").exists()
