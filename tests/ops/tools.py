"""Where the ops tests find Prometheus' binaries: `.ci/run` unpacks Debian's `prometheus` package into
.cache/prometheus; otherwise they are looked for on PATH. Missing, a test fails under CI=true and is skipped
elsewhere, saying how to get them."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
CACHE_BIN = ROOT / ".cache" / "prometheus" / "usr" / "bin"
HOW = ("run `bash .ci/run` once, or: mkdir -p .cache && cd .cache && apt-get download prometheus && "
       "dpkg -x prometheus_*.deb prometheus")


def binary(name: str) -> str:
    """The path of `promtool` or `prometheus`, or fail (CI) / skip (elsewhere)."""
    cached = CACHE_BIN / name
    found = str(cached) if os.access(cached, os.X_OK) else shutil.which(name)
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{name} is missing in CI: {HOW}")
        pytest.skip(f"{name} not found in {CACHE_BIN} or on PATH: {HOW}")
    return found
