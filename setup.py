"""Build autoal_fast, driving CMake for the compiled core autoal_fast._C.

Follows pybind11's cmake_example: the extension is declared by its source
folder and build_ext runs CMake configure + build into the output directory.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


def read_version():
    text = (ROOT / "autoal_fast" / "_version.py").read_text()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


class CMakeExtension(Extension):
    def __init__(self, name, sourcedir=""):
        super().__init__(name, sources=[])
        self.sourcedir = os.fspath(Path(sourcedir).resolve())


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        cmake = shutil.which("cmake")
        if cmake is None:
            raise RuntimeError(
                "autoal_fast needs CMake >= 3.18 to build its C++ core: "
                "`pip install cmake` or install it with your system package manager."
            )
        if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
            raise RuntimeError(
                "autoal_fast needs a C++17 compiler (g++ or clang++) to build its C++ core."
            )
        try:
            import pybind11
        except ImportError as exc:  # pragma: no cover - build requirement
            raise RuntimeError("autoal_fast needs pybind11 to build: `pip install pybind11`") from exc
        extdir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        cfg = "Debug" if os.environ.get("AUTOAL_FAST_DEBUG") else "Release"
        cmake_args = [
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={extdir}{os.sep}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DAUTOAL_FAST_VERSION={read_version()}",
        ]
        if "CMAKE_ARGS" in os.environ:
            cmake_args += [a for a in os.environ["CMAKE_ARGS"].split(" ") if a]
        if shutil.which("ninja") and "CMAKE_GENERATOR" not in os.environ:
            cmake_args += ["-GNinja"]
        build_temp = Path(self.build_temp) / ext.name
        build_temp.mkdir(parents=True, exist_ok=True)
        try:
            subprocess.run([cmake, ext.sourcedir, *cmake_args], cwd=build_temp, check=True)
            subprocess.run([cmake, "--build", ".", "--config", cfg, "--parallel"],
                           cwd=build_temp, check=True)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(
                "building autoal_fast._C failed (see the CMake output above); it needs "
                "CMake >= 3.18, a C++17 compiler, pybind11 and, for threads, OpenMP."
            ) from exc


setup(
    version=read_version(),
    packages=[
        "autoal_fast",
        "autoal_fast.strategies",
        "autoal_fast.search",
        "autoal_fast.experiment",
        "autoal_fast.kernels",
    ],
    package_dir={"autoal_fast.kernels": "kernels"},
    ext_modules=[CMakeExtension("autoal_fast._C", sourcedir=str(ROOT))],
    cmdclass={"build_ext": CMakeBuild},
    zip_safe=False,
)
