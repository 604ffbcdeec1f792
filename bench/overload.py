"""`make bench-overload`: `tfvae serve` offered 4× the load it can carry.

Issue 16's load test. A decoder heavy enough that the model, not HTTP, bounds the server
(z[32] -> 8192 -> 4096 -> 3072, ONNX Runtime on one thread so the load generator has the
other core) is served with its default limits except a batch queue of `--max-queue-rows`.

1. Capacity: closed loop, 32 keep-alive connections each sending its next request when
   the last is answered, for `--seconds`: answered requests per second.
2. Overload: open loop at 4× that rate for `--seconds` (requests are sent on a fixed
   schedule whatever the answers; latency counts from the scheduled time, so a late
   client cannot hide the server's delay), over a pool of keep-alive connections.

Every request must end as its answer (200) or a refusal (503, `Retry-After`), none as a
client timeout (`--timeout-s`) or any other status; the answered requests' p99 must stay
near the queue's bound (`--max-queue-rows` / capacity + one batch), and the server's
resident memory must stay flat (sampled every 0.25 s). Results: bench/results/overload.json.
"""

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import keras
import numpy as np
import uvloop
from results_io import cpu, provenance, write_result
from stalled_uploads import free_port, rss_mib

import tfvae

HERE = os.path.dirname(os.path.abspath(__file__))
LATENT = 32


def export_model(repository):
    keras.utils.set_random_seed(0)
    model = tfvae.VAE((3072,), LATENT, hidden_units=(4096, 8192), seed=0)  # decoder 32 -> 8192 -> 4096 -> 3072
    tfvae.export(model, repository, "heavy", parts=("decoder",))


def request_bytes(port):
    z = np.random.default_rng(0).standard_normal(LATENT).tolist()
    body = json.dumps(
        {
            "inputs": [{"name": "z", "shape": [1, LATENT], "datatype": "FP32", "data": z}],
            "outputs": [{"name": "mean", "parameters": {"binary_data": True}}],  # 12 KiB of bytes, not JSON
        }
    ).encode()
    head = (
        f"POST /v2/models/heavy/infer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def exchange(reader, writer, message):
    """Sends one request on a keep-alive connection; returns its status code and whether
    the connection stays open (uvicorn closes it after its own 503 past --max-connections)."""
    writer.write(message)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("the server closed the connection")
    length, keep_alive = 0, True
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
    await reader.readexactly(length)
    return int(status_line.split()[1]), keep_alive


async def closed_loop(port, message, connections, seconds):
    stop = time.perf_counter() + seconds
    answered = [0]

    async def client():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < stop:
            status, keep_alive = await exchange(reader, writer, message)  # awaited first: `x += await` loses updates
            answered[0] += status == 200
            if not keep_alive:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return answered[0] / seconds


async def open_loop(port, message, rate, seconds, pool, timeout_s):
    """`rate` requests per second for `seconds`, each timed from its scheduled send."""
    schedule = asyncio.Queue()
    outcomes = []  # (status or "timeout"/"error", latency s, send lag s, scheduled s after the start)
    total = int(rate * seconds)

    async def connection(reader, writer):
        while True:
            due = await schedule.get()
            if due is None:
                break
            lag = time.perf_counter() - due  # the client's own delay: it must stay small
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                status, keep_alive = await asyncio.wait_for(exchange(reader, writer, message), timeout_s)
                if not keep_alive:
                    writer.close()
                    writer = None
            except asyncio.TimeoutError:
                status, writer = "timeout", None
            except (ConnectionError, OSError, asyncio.IncompleteReadError) as error:
                status, writer = f"error: {type(error).__name__}", None
            outcomes.append((status, time.perf_counter() - due, lag, due - started))
        if writer is not None:
            writer.close()

    # The pool is opened first, one connection after another, as a steady client's would be:
    # hundreds of connects at once would measure the listen backlog, not the server.
    pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(pool)]
    workers = [asyncio.ensure_future(connection(*pair)) for pair in pairs]
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0.001:
            await asyncio.sleep(delay)
        schedule.put_nowait(due)
    for _ in workers:
        schedule.put_nowait(None)
    await asyncio.gather(*workers)
    return outcomes, time.perf_counter() - started


def run(coroutine):
    """`coroutine` on uvloop: the load generator must cost the server's cores little."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


def percentiles(values):
    if not values:
        return None
    milliseconds = np.asarray(values) * 1000
    return {f"p{q}_ms": round(float(np.percentile(milliseconds, q)), 2) for q in (50, 99, 100)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--factor", type=float, default=4.0, help="offered load over the measured capacity")
    parser.add_argument("--max-queue-rows", type=int, default=256)
    parser.add_argument("--pool", type=int, default=900, help="the open loop's keep-alive connections")
    parser.add_argument("--timeout-s", type=float, default=10.0)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "overload.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        repository = os.path.join(work, "repo")
        export_model(repository)
        port = free_port()
        tfvae_cli = os.path.join(os.path.dirname(sys.executable), "tfvae")
        command = [tfvae_cli, "serve", repository, "--port", str(port), "--threads", "1"]
        command += ["--max-queue-rows", str(args.max_queue_rows), "--max-rows", str(args.max_queue_rows)]
        log = open(os.path.join(work, "server.log"), "w")
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            message = request_bytes(port)
            deadline = time.monotonic() + 120
            while True:
                try:
                    run(closed_loop(port, message, 1, 0.2))
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.3)
            run(closed_loop(port, message, 32, 3))  # warm-up
            capacity = run(closed_loop(port, message, 32, args.seconds))
            print(f"capacity: {capacity:.0f} answered requests/s at 32 connections", flush=True)
            rss, sampling = [], threading.Event()

            def sample():
                while not sampling.wait(0.25):
                    rss.append(rss_mib(server.pid))

            sampler = threading.Thread(target=sample)
            sampler.start()
            rate = args.factor * capacity
            outcomes, elapsed = run(open_loop(port, message, rate, args.seconds, args.pool, args.timeout_s))
            sampling.set()
            sampler.join()
            after = run(closed_loop(port, message, 32, 3))  # and it serves on at capacity
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
            log.close()
    by_status = {}
    for status, *_ in outcomes:
        by_status[str(status)] = by_status.get(str(status), 0) + 1
    answered = [latency for status, latency, *_ in outcomes if status == 200]
    refused = [latency for status, latency, *_ in outcomes if status == 503]
    # p99 of the answered ones over each 2 s of the schedule: flat, not growing with time.
    windows = {}
    for status, latency, _, at in outcomes:
        if status == 200:
            windows.setdefault(int(at // 2) * 2, []).append(latency)
    queue_bound_ms = 1000 * args.max_queue_rows / capacity
    report = {
        "benchmark": "open-loop overload of tfvae serve at a multiple of its measured capacity",
        "model": "decoder z[32] -> 8192 -> 4096 -> 3072, ONNX Runtime, 1 intra-op thread",
        "server": " ".join(command[1:2] + command[3:]),
        "capacity_requests_per_s": round(capacity, 1),
        "offered_requests_per_s": round(rate, 1),
        "offered_requests": len(outcomes),
        "sending_seconds": round(elapsed, 2),
        "outcomes": by_status,
        "answered_share": round(len(answered) / len(outcomes), 4),
        "answered_latency": percentiles(answered),
        "refused_latency": percentiles(refused),
        "queue_bound_ms": round(queue_bound_ms, 1),
        "answered_p99_ms_by_2s": {f"{t}-{t + 2}s": percentiles(v)["p99_ms"] for t, v in sorted(windows.items())},
        "client_send_lag": percentiles([lag for _, _, lag, _ in outcomes]),
        "rss_mib": {
            "min": round(min(rss), 1),
            "max": round(max(rss), 1),
            "first": round(rss[0], 1),
            "last": round(rss[-1], 1),
        },
        "capacity_after_requests_per_s": round(after, 1),
        "every_request_answered_or_refused": set(by_status) <= {"200", "503"},
        "settings": vars(args),
        "cpu": cpu(),
        **provenance(),
        "command": "make bench-overload",
    }
    write_result(args.out, report)
    keys = ("outcomes", "answered_latency", "answered_p99_ms_by_2s", "refused_latency", "client_send_lag", "rss_mib")
    print(json.dumps({k: report[k] for k in keys}))


if __name__ == "__main__":
    main()
