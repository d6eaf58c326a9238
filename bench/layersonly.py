"""The bench's fresh processes import as a Lambda function would: what the Lambda layers do not ship (the
distributions layers/deps/constraints.txt does not pin, some of which change what botocore and urllib3 import) is
hidden. bench.run puts their module names in the environment (hidden_env); bench.container and bench.phases.memory
call hide() first, and bench/lambda_site/sitecustomize.py calls it in every Python the cold starts run.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

ENV = "PICTRACE_BENCH_HIDDEN_MODULES"
CONSTRAINTS = Path(__file__).resolve().parent.parent / "layers" / "deps" / "constraints.txt"
#: what a function has besides the layers' distributions: our package, and the runtime's SnapStart hooks module
PROVIDED = frozenset({"pictrace", "snapshot-restore-py"})
#: hidden when the environment names nothing (a child run on its own)
DEFAULT = ("awscrt",)


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lacking() -> list[str]:
    """Top-level modules of this environment's distributions that the Lambda layers do not ship."""
    import importlib.metadata

    pins = [line.split("==", 1)[0] for line in CONSTRAINTS.read_text().splitlines() if "==" in line]
    shipped = PROVIDED | {_canonical(pin) for pin in pins if not pin.lstrip().startswith("#")}
    found = importlib.metadata.packages_distributions().items()
    return sorted(
        m for m, ds in found if m.isidentifier() and m[0] != "_" and not any(_canonical(d) in shipped for d in ds)
    )


def hidden_env() -> dict[str, str]:
    """The environment entry that makes hide() hide every module lacking() names."""
    return {ENV: ",".join(lacking())}


def hide() -> None:
    """Make importing the modules the environment names (else DEFAULT) raise ImportError, unless already imported."""
    names = os.environ.get(ENV)
    for name in names.split(",") if names else DEFAULT:
        if name and name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
