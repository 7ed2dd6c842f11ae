"""Make sure the example plugin distribution is installed in the running venv (``make venv``
installs it; an older venv gets it here, once): ``pip install --no-deps -e tests/example_plugin``."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ensure_installed() -> None:
    names = {ep.name for ep in entry_points(group="tapnf.plugins")}
    if {"rot13", "pingblock"} <= names:
        return
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(HERE)],
        check=True,
        timeout=300,
    )
    # the editable install works through a .pth file: have this interpreter read it now
    import importlib
    import site

    for d in site.getsitepackages():
        site.addsitedir(d)
    importlib.invalidate_caches()
