"""Phase "machine": what the run ran on (CPU, memory, versions, the tree and its commit)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT, git, uncommitted

PACKAGES = ("numpy", "opencv-python-headless", "onnxruntime", "faiss-cpu", "scikit-image", "moto", "tensorflow-cpu")


@dataclass(frozen=True)
class MachineInfo:  # results.json's "machine"
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
    """The CPU's model name and int8 dot-product instructions (SSCD's int8 model takes 2.5x less CPU with VNNI)."""
    try:
        lines = cpuinfo.read_text().splitlines()
    except OSError:
        return "unknown"
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown")
    flags = next((set(line.split(":", 1)[1].split()) for line in lines if line.startswith("flags")), set())
    vnni = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX-VNNI" if "avx_vnni" in flags else ""
    return f"{name} ({vnni or ('AVX2, ' if 'avx2' in flags else '') + 'no VNNI'})"


def package_version(name: str) -> str:
    """An installed distribution's version, or "not installed"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def machine() -> MachineInfo:
    """What this ran on."""
    import pictrace
    import psutil

    out: dict[str, Any] = dict(tree=str(ROOT), pictrace_from=str(Path(pictrace.__file__).parent))
    out |= dict(uncommitted=uncommitted("layers", "functions", "bench", "infra"), cpu=cpu_model(), cores=os.cpu_count())
    out |= dict(memory_gb=round(psutil.virtual_memory().total / 2**30, 1), python=platform.python_version())
    out |= dict(os=f"{platform.system()} {platform.release()}", versions={n: package_version(n) for n in PACKAGES})
    return MachineInfo(**out, commit=git("rev-parse", "--short", "HEAD").strip() or "?", gpu="none")
