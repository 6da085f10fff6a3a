"""One line describing the machine a benchmark ran on, for the reports."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe_machine() -> str:
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} logical CPUs ({cpu_model()}), "
        f"no GPU used, Python {platform.python_version()}"
    )
