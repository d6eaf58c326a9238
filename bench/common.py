"""What the bench's modules share: the tree's paths, the sample images, child processes, the tree's git state, and
this process's memory as the kernel counts it."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data/samples"
SIGNALS_DIR = ROOT / "build" / "bench"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
#: the search's shortlist (and top_k) in the quality pass; the latency passes use the product's defaults
SHORTLIST = 50


def images_in(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name."""
    found = folder.iterdir() if folder.is_dir() else ()
    return sorted(p for p in found if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def child_json(args: list[str], timeout: float = 600) -> Any:
    """Run `python -m <args>` in a fresh process with this environment; its last stdout line is JSON."""
    done = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def json_default(o: Any) -> Any:
    """json.dumps' fallback: numpy scalars and paths."""
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def git(*args: str) -> str:
    """A git command's output in the tree ("" when it fails)."""
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except OSError:
        return ""
    return done.stdout if done.returncode == 0 else ""


def uncommitted(*folders: str) -> list[str]:
    """The files with uncommitted changes under these folders of the tree (what a run measured besides the commit)."""
    return sorted({line[3:] for line in git("status", "--porcelain", "--", *folders).splitlines() if line.strip()})


def rss() -> int:
    """This process's resident set size in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _status(field: str, path: str = "/proc/self/status") -> int | None:
    """A "<field>: <n> kB" line of /proc/self/status (or /proc/meminfo) in bytes."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def resident_file() -> int:
    """This process's resident pages backed by files (RssFile: code of the libraries it has run, mapped files)."""
    return _status("RssFile") or 0


def peak_rss() -> int:
    """This process's peak resident set size so far: VmHWM (ru_maxrss starts at a forked parent's RSS)."""
    return _status("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def vm_size() -> int:
    """This process's address space in bytes (VmSize)."""
    return _status("VmSize") or 0


def available() -> int:
    """Bytes of memory the machine can give without swapping (MemAvailable)."""
    if (found := _status("MemAvailable", "/proc/meminfo")) is None:
        raise RuntimeError("no MemAvailable in /proc/meminfo")
    return found


def malloc_trim() -> int:
    """Give the C heap's free memory back to the OS (glibc's malloc_trim); returns the bytes of RSS released."""
    import ctypes
    import ctypes.util

    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return 0
    before = rss()
    trim(0)
    return max(0, before - rss())


def drop_from_page_cache(folder: Path) -> bool:
    """Evict the files under folder from the page cache (False where the OS has no posix_fadvise)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in (os.path.join(dirpath, name) for dirpath, _dirs, files in os.walk(folder) for name in files):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True
