"""Put the lib folders of NVIDIA's CUDA 11 pip packages (nvidia-*-cu11) on LD_LIBRARY_PATH in a venv's
activate script, so that mxnet-cu112 finds libcudart.so.11.0, libcublas.so.11, libcudnn.so.8, ...

The dynamic loader reads LD_LIBRARY_PATH only when a process starts, so it must be set before
Python runs: in `activate`, which `make` sources. Run with the venv's own Python; re-running
replaces the earlier block. usage: python wire_cuda_libraries.py .venv/bin/activate
"""

import sys
import sysconfig
from pathlib import Path

BEGIN = "# >>> cifar-repro: CUDA 11 libraries from NVIDIA's pip packages >>>"
END = "# <<< cifar-repro <<<"


def cuda_library_dirs(site_packages: Path) -> list[str]:
    return sorted(str(lib) for lib in site_packages.glob("nvidia/*/lib") if lib.is_dir())


def with_library_block(activate_text: str, library_dirs: list[str]) -> str:
    """activate's text without any earlier block, plus one exporting library_dirs."""
    lines = activate_text.splitlines()
    if BEGIN in lines:
        lines = lines[: lines.index(BEGIN)] + lines[lines.index(END) + 1 :]
    joined = ":".join(library_dirs)
    block = [BEGIN, f'export LD_LIBRARY_PATH="{joined}${{LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}}"', END]
    return "\n".join(lines + block) + "\n"


def main() -> int:
    activate = Path(sys.argv[1])
    library_dirs = cuda_library_dirs(Path(sysconfig.get_paths()["purelib"]))
    if not library_dirs:
        print(
            "error: no nvidia/*/lib folders in this environment; install envs/requirements-cu112.txt first",
            file=sys.stderr,
        )
        return 1
    activate.write_text(with_library_block(activate.read_text(), library_dirs))
    print(f"{activate}: LD_LIBRARY_PATH gets {len(library_dirs)} CUDA library folders")
    return 0


if __name__ == "__main__":
    sys.exit(main())
