"""What every bench script records with its figures, and how it writes them."""

import os
import platform
import subprocess


def provenance():
    """The machine and the git commit a result was measured on, and whether tracked files
    other than bench/results/ differed from that commit (then the commit alone does not
    reproduce the result)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        # Earlier results rewritten in bench/results/ change no code that produced this one.
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)bench/results"],
            capture_output=True,
            text=True,
        ).stdout
    except FileNotFoundError:  # a machine without git (a lent GPU machine may have none)
        commit = changed = None
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "git_commit": commit,
        "git_uncommitted_changes": None if changed is None else bool(changed.strip()),
    }


def cpu():
    """The CPU's model name and its vector-instruction flags (AVX-512 or not, FMA, AMX):
    absolute speeds move with them from machine to machine."""
    with open("/proc/cpuinfo") as f:
        lines = f.read().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)
    flags = next(line.split(":", 1)[1].split() for line in lines if line.startswith("flags"))
    return {"model": model, "vector_flags": sorted(f for f in flags if f.startswith(("avx", "fma", "amx")))}


def write_result(path, report):
    """Writes `report` as indented JSON to `path` (atomically), creating its folder."""
    # Imported here, so that a script which runs where tfvae does not install
    # (bench/gpu_row.py) can still record its provenance.
    from tfvae import files

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    files.write_json(path, report)
