"""Shared by the benchmarks: where results go and how they are written."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parents[1] / "reports" / "benchmarks"


def machine() -> dict:
    """What most benchmarks record. `cpu_threads` is torch's thread count when the result is
    written, not the machine's CPUs; benchmarks that change it record `host()` instead."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def host() -> dict:
    """The machine itself: logical CPUs (`os.cpu_count()`) and the device; the torch threads a
    benchmark used go in a field of their own, named for what they are."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def write_result(name: str, result: dict, machine_info: dict | None = None, folder: Path = RESULTS) -> Path:
    """Write `<folder>/<name>.json` (default `reports/benchmarks/`) with the machine (`machine()`
    unless `machine_info` is given) and a timestamp."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    body = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            "machine": machine() if machine_info is None else machine_info, **result}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path
