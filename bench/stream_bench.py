"""`make bench-stream`: training streamed from TFRecord shards several times larger than a memory cap.

The data: `--examples` random 32×32×3 crops of scikit-learn's two sample photographs
(the training region of `photo_patches`: no crop overlaps its validation or test
columns), written once as uint8 records in 64 shards; `valid` is photo_patches' own
validation split. As float32 in memory the training split would take
`--examples` × 12 KiB, several times `--memory-cap-gib`.

Measured, each `tfvae train` in a process of its own (peak resident memory from the
child's own ru_maxrss):
1. the throughput and memory of streaming against memory: one epoch on `--subset`
   other crops, from records and from an in-memory .npz, the same model and seed;
2. one epoch of the whole stream: its peak resident memory must stay under the cap
   (else the bench fails) and should equal the subset's streamed peak (memory does
   not grow with the data).
Writes bench/results/stream.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from results_io import provenance, write_result

from tfvae import data, records

HERE = os.path.dirname(os.path.abspath(__file__))
TFVAE = os.path.join(os.path.dirname(sys.executable), "tfvae")
MODEL = [
    "--likelihood",
    "discretized_logistic",
    "--hidden-units",
    "512,256",
    "--latent-dim",
    "32",
    "--batch-size",
    "256",
    "--epochs",
    "1",
    "--seed",
    "0",
    "--quiet",
    "--no-pictures",
    "--overwrite",
]


def random_crops(count, seed):
    """`count` random 32×32×3 uint8 crops of the photographs' training columns."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    right = data.PATCH_COLUMNS["train"][1]
    rng = np.random.default_rng(seed)
    for _ in range(count):
        photo = photos[rng.integers(len(photos))]
        top, left = rng.integers(photo.shape[0] - data.PATCH + 1), rng.integers(right - data.PATCH + 1)
        yield photo[top : top + data.PATCH, left : left + data.PATCH]


def write_dataset(folder, count, seed):
    if records.is_record_dataset(folder) and records.record_files(folder, "valid"):
        return
    shutil.rmtree(folder, ignore_errors=True)
    records.write_records(folder, "train", random_crops(count, seed), examples_per_shard=-(-count // 64))
    records.write_records(
        folder, "valid", data.load_dataset("photo_patches", "discretized_logistic").valid.astype(np.uint8)
    )


def timed_train(data_path, out):
    """`(seconds, peak RSS in bytes, history)` of one `tfvae train` process."""
    started = time.perf_counter()
    process = subprocess.Popen([TFVAE, "train", "--data", data_path, "--out", out, *MODEL])
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status):
        sys.exit(f"tfvae train --data {data_path} failed")
    with open(os.path.join(out, "history.json")) as f:
        history = json.load(f)
    return seconds, usage.ru_maxrss * 1024, history


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500_000)
    parser.add_argument("--subset", type=int, default=20_000)
    parser.add_argument("--memory-cap-gib", type=float, default=2.0)
    parser.add_argument("--work", default="runs/bench-stream")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "stream.json"))
    args = parser.parse_args()
    folder = os.path.join(args.work, "records")
    started = time.perf_counter()
    write_dataset(folder, args.examples, seed=0)
    write_seconds = time.perf_counter() - started
    disk = sum(os.path.getsize(f) for f in records.record_files(folder, "train"))

    subset = os.path.join(args.work, "subset")
    shutil.rmtree(subset, ignore_errors=True)
    crops = np.stack(list(random_crops(args.subset, seed=1)))
    valid = data.load_dataset("photo_patches", "discretized_logistic").valid
    records.write_records(subset, "train", crops, examples_per_shard=-(-args.subset // 8))
    records.write_records(subset, "valid", valid.astype(np.uint8))
    npz = os.path.join(args.work, "subset.npz")
    np.savez(npz, train=crops, valid=valid)
    subset_runs = {
        name: timed_train(path, os.path.join(args.work, f"run-subset-{name}"))
        for name, path in (("records", subset), ("in_memory", npz))
    }
    seconds, peak, history = timed_train(folder, os.path.join(args.work, "run-stream"))
    cap = args.memory_cap_gib * 2**30
    in_memory_bytes = args.examples * 32 * 32 * 3 * 4
    report = {
        "command": "make bench-stream",
        "examples": args.examples,
        "records_on_disk_gib": disk / 2**30,
        "as_float32_in_memory_gib": in_memory_bytes / 2**30,
        "memory_cap_gib": args.memory_cap_gib,
        "peak_rss_gib": peak / 2**30,
        "subset_streamed_peak_rss_gib": subset_runs["records"][1] / 2**30,
        "within_cap": peak <= cap,
        "data_over_cap": in_memory_bytes / cap,
        "write_seconds": write_seconds,
        "stream_epoch_seconds": seconds,
        "stream_images_per_second": args.examples / seconds,
        "stream_train_bits_per_dim": history["bits_per_dim"]["train"][0],
        "stream_valid_bits_per_dim": history["bits_per_dim"]["valid"][0],
        "subset": {
            name: {
                "examples": args.subset,
                "seconds": s,
                "peak_rss_gib": rss / 2**30,
                "train_loss": h["train"]["loss"][0],
            }
            for name, (s, rss, h) in subset_runs.items()
        },
        "subset_streamed_over_in_memory_seconds": subset_runs["records"][0] / subset_runs["in_memory"][0],
        "note": "seconds are whole `tfvae train` processes (start-up, checking the records, one epoch, "
        "writing the run).",
        **provenance(),
    }
    write_result(args.out, report)
    print(json.dumps(report, indent=2))
    if not report["within_cap"]:
        sys.exit(f"peak RSS {peak / 2**30:.2f} GiB exceeded the cap of {args.memory_cap_gib} GiB")


if __name__ == "__main__":
    main()
