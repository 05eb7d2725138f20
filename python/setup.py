# SPDX-License-Identifier: Apache-2.0
"""Builds sketchsgd's Python package and its C++ extension (pybind11) against
the header-only library in ../include (or $SKETCHSGD_INCLUDE)."""
import os

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

here = os.path.dirname(os.path.abspath(__file__))
include = os.environ.get("SKETCHSGD_INCLUDE", os.path.join(here, "..", "include"))
if not os.path.isfile(os.path.join(include, "sketchsgd", "sketchsgd.hpp")):
    raise SystemExit(f"sketchsgd headers not found in {include}: build from the source tree "
                     "or set SKETCHSGD_INCLUDE to the include/ folder")

# Compile the extension's sources in parallel (SKETCHSGD_BUILD_JOBS, default 2).
ParallelCompile("SKETCHSGD_BUILD_JOBS", default=2).install()

sources = ["module.cpp", "sketch.cpp", "aggregator.cpp", "reference.cpp"]
ext = Pybind11Extension(
    "sketchsgd._core",
    [os.path.join("src", s) for s in sources],
    include_dirs=[include],
    cxx_std=20,
    extra_compile_args=["-O2", "-g0", "-pthread", "-fvisibility=hidden"],
    extra_link_args=["-pthread"],
)

setup(
    name="sketchsgd",
    version="0.1.0",
    description="Count-Sketch gradient compression for PyTorch DDP (a DDP communication hook) over sketchsgd's C++ core",
    packages=["sketchsgd"],
    ext_modules=[ext],
    cmdclass={"build_ext": build_ext},
    python_requires=">=3.9",
    install_requires=["numpy"],
)
