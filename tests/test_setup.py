"""The set-up's own logic: wiring the CUDA libraries of the GPU variant into the venv."""

import importlib.util

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
