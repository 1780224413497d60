"""Peak memory of streamed FM training as the log grows 10x: it should stay flat.

For each log size (default 1M and 10M rows) the script writes a planted-FM interaction
log with :func:`fmadv.data.synthetic.write_synthetic_log`, then starts a FRESH Python
process that

1. builds the feature map in one streaming pass (:func:`stream_feature_map`),
2. trains a factorization machine (k = 16, hinge, Adam, batch 65536) for one epoch
   through :meth:`StreamingLog.batch_source` and :func:`fmadv.training.loop.fit_loop`,

and reports its rows, seconds, rows per second and peak resident memory. The peak is
``VmHWM`` from ``/proc/self/status`` of that process. ``ru_maxrss`` would be wrong here:
Linux carries it across ``exec`` from the parent, so a child started by a big parent
reports the parent's peak. A first row, "imports only", is a process that imports the
same libraries and does nothing: the fixed cost every row carries.

``--csv`` also writes each log as CSV (streamed by polars) and measures it the same way.
``--in-memory`` adds, for comparison, a process per log that reads the whole log with
polars, encodes it with ``frame_to_dataset`` and runs the same epoch from memory.

Run:  python eval/bench/streaming_memory.py                    # 1M and 10M rows
      python eval/bench/streaming_memory.py --rows 10000000,100000000 --csv --dir /big/disk

On a machine whose cores are shared with other jobs, ``--threads 1`` avoids torch's
intra-op threads waiting on each other (measured there: 20x faster steps); it does not
change the memory picture.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIELDS = ["user", "item", "segment", "category"]


def peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


# -- the measured process --------------------------------------------------------------


def _import_everything() -> None:
    # What every measured process loads, so that the "imports only" row is comparable.
    import polars  # noqa: F401
    import pyarrow.parquet  # noqa: F401
    import torch  # noqa: F401

    import fmadv.data.stream  # noqa: F401
    import fmadv.training.loop  # noqa: F401


def worker(args: argparse.Namespace) -> dict:
    """One measurement, run in its own process; returns what the table shows."""
    _import_everything()
    import torch

    from fmadv.data.features import frame_to_dataset
    from fmadv.data.stream import StreamingLog, stream_feature_map
    from fmadv.models.fm import FactorizationMachine
    from fmadv.training.fm import FMPenalty, shuffled_batches
    from fmadv.training.loop import TrainConfig, fit_loop

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mode == "imports":
        return {"peak_mib": peak_rss_mib()}

    config = TrainConfig(
        epochs=1, batch_size=args.batch_size, lr=0.01, optimizer="adam", seed=0, device="cpu"
    )
    started = time.perf_counter()
    if args.mode == "stream":
        fmap = stream_feature_map(args.log, FIELDS)
        map_seconds = time.perf_counter() - started
        map_peak = peak_rss_mib()
        log = StreamingLog(args.log, fmap, "rating", threshold=4)
        n_rows, batches = log.n_rows, log.batch_source(config.batch_size)
    else:
        import polars as pl

        data = frame_to_dataset(pl.read_parquet(args.log), "rating", FIELDS, threshold=4)
        fmap, n_rows = data.feature_map, data.X.shape[0]
        map_seconds = time.perf_counter() - started
        map_peak = peak_rss_mib()
        batches = shuffled_batches(data.X, data.y, config.batch_size)

    model = FactorizationMachine(fmap.n_features, args.k, 0.01, torch.Generator().manual_seed(0))

    penalty = FMPenalty()
    trained = time.perf_counter()
    history = fit_loop(model, batches, n_rows, None, config, penalty=penalty)
    done = time.perf_counter()
    return {
        "rows": n_rows,
        "features": fmap.n_features,
        "map_seconds": map_seconds,
        "epoch_seconds": done - trained,
        "seconds": done - started,
        "train_loss": history.records[-1]["train_loss"],
        "map_peak_mib": map_peak,
        "peak_mib": peak_rss_mib(),
    }


# -- the driver ------------------------------------------------------------------------


def measure(mode: str, log: Path | None, args: argparse.Namespace) -> dict:
    """Run :func:`worker` in a fresh interpreter and parse the JSON line it prints."""
    command = [
        sys.executable,
        __file__,
        "--worker",
        mode,
        "--log",
        str(log or ""),
        "--k",
        str(args.k),
        "--batch-size",
        str(args.batch_size),
        "--threads",
        str(args.threads),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"measurement failed ({mode}, {log}):\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,10000000", help="comma-separated log sizes")
    parser.add_argument("--dir", help="folder for the logs (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=65_536)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--csv", action="store_true", help="also stream CSV copies of the logs")
    parser.add_argument("--in-memory", action="store_true", help="also time in-memory training")
    parser.add_argument("--worker", choices=("stream", "memory", "imports"), help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.mode = args.worker
        print(json.dumps(worker(args)))
        return

    sizes = [int(n) for n in args.rows.split(",")]
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as temp:
        folder = Path(args.dir) if args.dir and args.keep else Path(temp)
        from fmadv.data.synthetic import write_synthetic_log

        logs = []
        for n in sizes:
            path = folder / f"log_{n}.parquet"
            started = time.perf_counter()
            seconds = None  # a log kept from an earlier run (--keep) is reused
            if not path.exists():
                write_synthetic_log(path, n)
                seconds = time.perf_counter() - started
            logs.append((n, path, seconds))
        csvs = []
        if args.csv:
            import polars as pl

            for n, path, _ in logs:
                csv = path.with_suffix(".csv")
                if not csv.exists():
                    pl.scan_parquet(path).sink_csv(csv)
                csvs.append((n, csv))

        import torch

        print("# Streamed FM training: peak memory against log size\n")
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores (shared), "
            f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}; "
            f"k = {args.k}, batch {args.batch_size}, Adam, 1 epoch; "
            "peak = VmHWM of a fresh process\n"
        )
        for n, path, seconds in logs:
            size = path.stat().st_size / 2**20
            how = "reused" if seconds is None else f"written in {seconds:.1f} s"
            print(f"log of {n:,} rows: {size:,.0f} MiB of Parquet, {how}")
        for n, path in csvs:
            print(f"log of {n:,} rows: {path.stat().st_size / 2**20:,.0f} MiB of CSV")
        print()
        print(
            "| reader | rows | features | map pass s | epoch s | total s | rows/s "
            "| peak after map MiB | peak MiB |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        base = measure("imports", None, args)
        print(f"| imports only | - | - | - | - | - | - | - | {base['peak_mib']:,.0f} |")
        runs = [("StreamingLog, Parquet", "stream", path) for _, path, _ in logs]
        runs += [("StreamingLog, CSV", "stream", path) for _, path in csvs]
        if args.in_memory:
            runs += [("in memory, Parquet", "memory", path) for _, path, _ in logs]
        for name, mode, path in runs:
            r = measure(mode, path, args)
            print(
                f"| {name} | {r['rows']:,} | {r['features']:,} | {r['map_seconds']:.1f} "
                f"| {r['epoch_seconds']:.1f} | {r['seconds']:.1f} "
                f"| {r['rows'] / r['seconds']:,.0f} | {r['map_peak_mib']:,.0f} "
                f"| {r['peak_mib']:,.0f} |",
                flush=True,
            )
        if args.in_memory:
            print("\n(in memory: the map pass column is reading and encoding the whole log)")


if __name__ == "__main__":
    main()
