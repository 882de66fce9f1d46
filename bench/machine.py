"""Describe the machine and software a benchmark ran on."""

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path


def _first_line(command):
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    lines = (result.stdout + result.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gib():
    try:
        with open("/proc/meminfo") as f:
            kib = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
        return f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        return "?"


def _os_name():
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip("\n").split("=", 1) for line in f if "=" in line)
        return fields.get("PRETTY_NAME", "?").strip('"')
    except OSError:
        return platform.platform()


def describe(wrk="wrk", nginx="nginx"):
    """Ordered (name, value) pairs."""
    versions = []
    for package in ("torch", "mxnet", "mxnet-model-server", "numpy", "flask", "gunicorn", "locust"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    return [
        ("CPU", f"{_cpu_model()}, nproc={os.cpu_count()}"),
        ("memory", _memory_gib()),
        ("OS", f"{_os_name()}, kernel {platform.release()}"),
        ("Python", platform.python_version()),
        ("packages", ", ".join(versions)),
        ("Java", _first_line(["java", "-version"])),
        ("wrk", _first_line([wrk or "wrk", "-v"])),
        ("nginx", _first_line([nginx or "nginx", "-v"])),
    ]


def write_report(lines, output, load_before):
    """End a results page with the machine line and write it to `output`; returns the text."""
    machine = dict(describe())
    lines = list(lines) + [
        "",
        f"Machine: {machine['CPU']}, {machine['memory']}; 1-minute load average "
        f"{load_before:.1f} before the run and {os.getloadavg()[0]:.1f} after it.",
        "",
    ]
    text = "\n".join(lines)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(text)
    return text
