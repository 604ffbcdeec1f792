"""What every bench script records with its figures, and how it writes them."""

import os
import platform
import subprocess

from tfvae import files


def provenance():
    """The machine and the git commit a result was measured on."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}", "git_commit": commit}


def write_result(path, report):
    """Writes `report` as indented JSON to `path` (atomically), creating its folder."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    files.write_json(path, report)
