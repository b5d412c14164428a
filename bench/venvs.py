"""The benchmarks' own virtual environments: peers pinned apart from the project's venv (SDV, pyod), made once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def venv_python(venv: Path, packages: tuple[str, ...]) -> Path:
    """`venv`'s python, the venv made with `packages` first if it is not there yet."""
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"making {venv} ({', '.join(packages)}); a few minutes, once", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True)
    return python
