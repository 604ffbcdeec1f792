"""Resident memory of `tfvae serve` under 200 clients that stall just under the body limit.

Each client sends its headers (Content-Length: the 4 MiB limit) and all but one byte of
a JSON body, then stops. Measured for one server per code tree given (`--code NAME=DIR`,
e.g. a checkout of the commit before the body deadline, and this one: `DIR/tfvae` and
`DIR/serving`), each in its own process with its defaults, on the same export:
- RSS idle, 3 s after the stall begins, and after the body deadline (30 s by default)
  has passed;
- how many stalled clients were answered (408) and closed by then;
- the latency of one ordinary request made while the clients stall.
Writes bench/results/stalled_uploads.json.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import keras
import numpy as np
from results_io import provenance, write_result

import tfvae

HERE = os.path.dirname(os.path.abspath(__file__))
LIMIT = 4 * 2**20


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def code_tree(directory):
    """A folder whose `tfvae` package is `directory`'s, with its serving/ in place."""
    root = tempfile.mkdtemp(prefix="tfvae-code-")
    shutil.copytree(os.path.join(directory, "tfvae"), os.path.join(root, "tfvae"))
    os.symlink(os.path.join(directory, "serving"), os.path.join(root, "tfvae", "serving"))
    return root


def measure(code, export_dir, clients, wait_after):
    port = free_port()
    root = code_tree(code)
    # Run from `root`: `python -m` puts the working folder (here, this repository) first.
    server = subprocess.Popen(
        [sys.executable, "-m", "tfvae.cli", "serve", export_dir, "--port", str(port)],
        env={**os.environ, "PYTHONPATH": root},
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        idle = rss_mib(server.pid)
        body = b'{"instances": [' + b" " * (LIMIT - 17) + b"]}"  # LIMIT bytes, valid JSON
        sockets = []
        for _ in range(clients):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(
                f"POST /v1/models/gen:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body[:-1]
            )
            sockets.append(s)
        time.sleep(3)
        stalled = rss_mib(server.pid)
        started = time.perf_counter()
        ordinary = httpx.post(f"{url}/v1/models/gen:predict", json={"instances": [[0.0] * 4]}, timeout=60)
        latency = time.perf_counter() - started
        time.sleep(wait_after)
        after = rss_mib(server.pid)
        answered = 0
        for s in sockets:
            s.settimeout(0.5)
            try:
                reply = s.recv(64)
                answered += reply.startswith(b"HTTP/1.1 408")
            except OSError:
                pass
            s.close()
        return {
            "idle_rss_mib": idle,
            "stalled_rss_mib": stalled,
            f"rss_after_{wait_after}s_mib": after,
            "clients_answered_408": answered,
            "ordinary_request_status": ordinary.status_code,
            "ordinary_request_seconds": latency,
        }
    finally:
        server.terminate()
        server.wait(timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--wait-after", type=int, default=35)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "stalled_uploads.json"))
    args = parser.parse_args()
    export_dir = os.path.abspath(tempfile.mkdtemp(prefix="tfvae-stall-"))
    keras.utils.set_random_seed(0)
    model = tfvae.VAE((64,), 4, hidden_units=(32,), seed=0)
    model.compile()
    model.fit(np.zeros((64, 64), np.float32), epochs=1, verbose=0)
    tfvae.export(model, export_dir, "gen", parts=("decoder",))
    report = {
        "command": "python bench/stalled_uploads.py " + " ".join(f"--code {c}" for c in args.code),
        "clients": args.clients,
        "body_bytes_sent_each": LIMIT - 1,
        **provenance(),
    }
    for entry in args.code:
        name, directory = entry.split("=", 1)
        report[name] = measure(os.path.abspath(directory), export_dir, args.clients, args.wait_after)
        print(name, json.dumps(report[name]), flush=True)
    write_result(args.out, report)


if __name__ == "__main__":
    main()
