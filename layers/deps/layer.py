"""Helpers for layers/deps/Makefile (standard library only: it runs with whatever python3 `sam build` finds).

    python3 layer.py subtract ALL_REPORT CORE_REPORT OUT   pinned requirements in ALL but not in CORE (pip reports)
    python3 layer.py trim DIR [--strip STRIP]              remove what never runs in Lambda from an installed layer
    python3 layer.py compile DIR --python-version 3.12     byte-compile it for Lambda's Python (see compile_layer)
    python3 layer.py size DIR                              bytes of the files under DIR

Every trim below was checked against what PicTrace runs (tests/template/test_layers.py builds the layers for the
local interpreter with the same rules and runs decode, ORB, the LiteRT model, an S3 client and the API on them).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
from pathlib import Path

#: Paths (globs relative to the layer's python/ directory) that are never used at run time.
TRIM = [
    # ONNX Runtime: the C API library (the Python module, onnxruntime_pybind11_state, is self-contained and does
    # not load it), and the model tools (transformer optimisers, quantisation, converters) that never run here
    "onnxruntime/capi/libonnxruntime.so*",
    "onnxruntime/transformers",
    "onnxruntime/quantization",
    "onnxruntime/tools",
    "onnxruntime/datasets",
    # numpy's own test suites, and _simd, a module only those tests import
    "numpy/**/tests",
    "numpy/_core/_simd.*.so",
    # numpy's tools and helpers for other programs (Fortran wrappers, type annotations, test helpers, PyInstaller
    # hooks, C headers and libraries to build extensions against): numpy imports none of them itself
    "numpy/f2py",
    "numpy/typing",
    "numpy/testing",
    "numpy/_pyinstaller",
    "numpy/_core/include",
    "numpy/_core/lib",
    # OpenCV's Haar cascade files (cv2.CascadeClassifier data; PicTrace does not detect objects)
    "cv2/data/*.xml",
    # type stubs are for editors, not for the interpreter
    "**/*.pyi",
]

#: botocore service models kept: S3, S3 Vectors (IndexBackend=s3vectors), Lambda (the model layer's archive at cold
#: start), STS, SQS (ingest queues each new image's copy check) and EventBridge (events: a copy found).
#: tests/template/test_layers.py creates every client on the built layer.
BOTOCORE_SERVICES = {"s3", "s3vectors", "lambda", "sts", "sqs", "events"}

#: Shared objects that carry symbol tables worth stripping (only done when `strip` understands the file).
STRIP = ["onnxruntime/capi/onnxruntime_pybind11_state*.so"]


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _installs(report: Path) -> dict[str, str]:
    data = json.loads(report.read_text())
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in data["install"]}


def subtract(all_report: Path, core_report: Path, out: Path) -> list[str]:
    """Write `name==version` for each distribution of the full set that the core set does not install."""
    everything, core = _installs(all_report), _installs(core_report)
    clash = {n for n in everything.keys() & core.keys() if everything[n] != core[n]}
    if clash:
        raise SystemExit(f"core and API resolve different versions of {sorted(clash)}: pin them in constraints.txt")
    lines = [f"{name}=={version}" for name, version in sorted(everything.items()) if name not in core]
    out.write_text("\n".join(lines) + "\n")
    return lines


def _remove(path: Path) -> int:
    size = size_of(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return size


def trim(root: Path, strip: str | None = None) -> int:
    """Remove TRIM and the unused botocore models from an installed layer; strip STRIP. Returns bytes saved."""
    saved = 0
    for pattern in TRIM:
        for path in sorted(root.glob(pattern), key=lambda p: len(p.parts), reverse=True):
            if path.exists():
                saved += _remove(path)
    data = root / "botocore" / "data"
    if data.is_dir():
        for service in data.iterdir():
            if service.is_dir() and service.name not in BOTOCORE_SERVICES:
                saved += _remove(service)
    if strip and shutil.which(strip):
        for path in (p for pattern in STRIP for p in sorted(root.glob(pattern))):
            if not path.is_file():
                continue
            before = path.stat().st_size
            # an x86_64 strip cannot read aarch64 objects: then the file is kept as it is
            result = subprocess.run([strip, "--strip-unneeded", str(path)], capture_output=True, text=True, check=False)
            if result.returncode == 0:
                saved += before - path.stat().st_size
    return saved


def compile_layer(root: Path, python_version: str) -> bool:
    """Byte-compile every module under root (__pycache__/*.cpython-312.pyc), if this interpreter is the runtime's
    Python version; False, compiling nothing, otherwise.

    Lambda's /opt is read-only: without .pyc files in the layer, every new container compiles each module it
    imports from source, and never keeps the result (bench.phases.coldstart measures the difference). The files are
    checked by hash, not by the source's mtime, which the zip and its extraction do not keep; "unchecked": a layer
    version never changes.
    """
    if f"{sys.version_info.major}.{sys.version_info.minor}" != python_version:
        return False
    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    ok = compileall.compile_dir(str(root), quiet=2, workers=0, invalidation_mode=mode)
    if not ok:
        raise SystemExit(f"byte-compiling {root} failed")
    return True


def size_of(path: Path) -> int:
    """Bytes of the regular files under path (what Lambda counts once the zip is extracted)."""
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for base, _dirs, files in os.walk(path):
        total += sum((Path(base) / f).lstat().st_size for f in files)
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("subtract")
    p.add_argument("all_report", type=Path)
    p.add_argument("core_report", type=Path)
    p.add_argument("out", type=Path)
    p = sub.add_parser("trim")
    p.add_argument("root", type=Path)
    p.add_argument("--strip", default=None)
    p = sub.add_parser("compile")
    p.add_argument("root", type=Path)
    p.add_argument("--python-version", required=True)
    p = sub.add_parser("size")
    p.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    if args.command == "subtract":
        lines = subtract(args.all_report, args.core_report, args.out)
        sys.stdout.write(f"{len(lines)} distributions beyond the core layer: {' '.join(lines)}\n")
    elif args.command == "compile":
        before = size_of(args.root)
        if compile_layer(args.root, args.python_version):
            sys.stdout.write(f"byte-compiled {args.root}: {size_of(args.root) - before:+,} bytes\n")
        else:
            sys.stdout.write(
                f"not byte-compiled: this is Python {sys.version_info.major}.{sys.version_info.minor}, the runtime's "
                f"is {args.python_version} (PYTHON=python{args.python_version} compiles; Lambda then imports faster)\n"
            )
    elif args.command == "trim":
        before = size_of(args.root)
        saved = trim(args.root, args.strip)
        sys.stdout.write(f"trimmed {saved} of {before} bytes from {args.root}: {before - saved} left\n")
    else:
        sys.stdout.write(f"{size_of(args.root)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
