"""Phase "machine": what the run ran on (CPU, memory, versions, the tree and its commit)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, git, uncommitted

PACKAGES = ("numpy", "opencv-python-headless", "onnxruntime", "faiss-cpu", "scikit-image", "moto", "tensorflow-cpu")


@dataclass(frozen=True)
class MachineInfo:
    """results.json's "machine"."""

    tree: str
    pictrace_from: str
    uncommitted: list[str]  # files changed since the commit under layers, functions, bench, infra
    cpu: str
    cores: int | None
    memory_gb: float
    python: str
    os: str
    versions: dict[str, str]
    commit: str
    gpu: str


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name and the int8 dot-product instructions it has, from /proc/cpuinfo ("unknown" without it):
    SSCD's int8 ResNet50 took 2.5x less CPU per image on a 2-core EPYC with AVX-512 VNNI than on one without."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return "unknown"
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    if "avx512_vnni" in flags:
        return f"{name} (AVX-512 VNNI)"
    if "avx_vnni" in flags:
        return f"{name} (AVX-VNNI)"
    return f"{name} ({'AVX2, ' if 'avx2' in flags else ''}no VNNI)"


def package_versions() -> dict[str, str]:
    """The measured packages' versions."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine() -> MachineInfo:
    """What this ran on."""
    import pictrace
    import psutil

    return MachineInfo(
        tree=str(ROOT),
        pictrace_from=str(Path(pictrace.__file__).parent),
        uncommitted=uncommitted("layers", "functions", "bench", "infra"),
        cpu=cpu_model(),
        cores=os.cpu_count(),
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
        python=platform.python_version(),
        os=f"{platform.system()} {platform.release()}",
        versions=package_versions(),
        commit=git("rev-parse", "--short", "HEAD").strip() or "?",
        gpu="none",
    )
