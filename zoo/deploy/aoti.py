"""Build and run the C++ program that loads an AOTInductor package (zoo/deploy/cpp/run_aoti.cpp).

    folder = zoo.deploy.export("cnn.fashion_mnist", "aoti", "out/cnn-aoti")   # model.aoti.pt2
    exe = build_runner("out/bin")                                              # g++ + the torch wheel
    run_cpp(exe, folder / "model.aoti.pt2", x)                                 # a tensor, computed in C++

The program is compiled with the system's g++ against the headers and libraries inside the installed
torch wheel (torch/include, torch/lib), with an rpath to them: nothing else is needed at run time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

SOURCE = Path(__file__).parent / "cpp" / "run_aoti.cpp"


def compiler() -> str | None:
    """The C++ compiler to use: $CXX, else g++ on the PATH, else None."""
    return os.environ.get("CXX") or shutil.which("g++")


def build_command(out: Path) -> list[str]:
    from torch.utils import cpp_extension

    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler: install g++ (Debian: apt-get install g++) or set CXX")
    includes = [f"-I{p}" for p in cpp_extension.include_paths()]
    libs = cpp_extension.library_paths()
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return [cxx, "-std=c++20", "-O1", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", *includes, str(SOURCE), "-o", str(out),
            *[f"-L{p}" for p in libs],
            # RPATH, not RUNPATH: it also serves the model library the loader dlopens, which needs libtorch.so
            "-Wl,--disable-new-dtags", *[f"-Wl,-rpath,{p}" for p in libs], "-ltorch", "-ltorch_cpu", "-lc10"]


def build_runner(out_dir: str | os.PathLike | None = None) -> Path:
    """Compile run_aoti.cpp into out_dir/run_aoti (reused when newer than the source); returns its path.

    Default folder: zoo's cache (`ZOO_CACHE`, ~/.cache/zoo), one build per torch install: the program's rpath
    names that install's torch/lib, so a build made from another virtual environment (since deleted) is not
    reused."""
    if out_dir is None:
        import hashlib

        from torch.utils import cpp_extension

        from ..utils import cache_dir

        where = hashlib.sha256("\n".join(cpp_extension.library_paths()).encode()).hexdigest()[:12]
        out_dir = cache_dir(f"aoti-runner-torch-{torch.__version__}-{where}")
    out = Path(out_dir) / "run_aoti"
    if out.is_file() and out.stat().st_mtime > SOURCE.stat().st_mtime:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(build_command(out), capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"g++ failed to build {SOURCE.name}:\n{done.stderr[-3000:]}")
    return out


def run_cpp(exe: str | os.PathLike, package: str | os.PathLike, x: torch.Tensor) -> torch.Tensor:
    """Run the package's first output on one float32 input through the C++ program."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        x.detach().float().contiguous().numpy().tofile(src)
        done = subprocess.run([str(exe), str(package), str(src), str(dst), *map(str, x.shape)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{Path(exe).name} failed ({done.returncode}): {done.stderr[-2000:]}")
        shape = [int(s) for s in done.stdout.split("output shape", 1)[1].split()]
        return torch.from_numpy(np.fromfile(dst, dtype=np.float32).reshape(shape))
