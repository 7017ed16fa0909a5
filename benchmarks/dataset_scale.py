#!/usr/bin/env python
"""Throughput and memory of dataset-scale attribution (``neuron-importance attribute``).

Run from the repository root with the project's virtual environment::

    python benchmarks/dataset_scale.py            # full run (~10 min on 2 cores)
    python benchmarks/dataset_scale.py --quick    # smaller data sets (~2 min on 2 cores)
    python benchmarks/dataset_scale.py --json dataset_scale.json

What is measured (every run is the real command in a fresh subprocess, as a user runs it):

1. **MNIST**: DeepLift (Rescale, target = predicted class) with the DeepLIFT paper's MNIST CNN
   (``mnist_cnn``, random weights with seed 0: speed does not depend on training) on the
   MNIST test set (10,000 images, from ``shared/data/mnist``, written as a ``.npy``), with 1
   process and with 2 processes (``torchrun --nproc-per-node 2``, gloo).
2. **DNA**: DeepLift (Rescale, zero reference, target 0; hypothetical contributions stored
   too, the default for DNA) with ``genomics_cnn`` on 100,000 simulated 200-bp sequences
   (uniform random A/C/G/T, seed 0, one FASTA file), 1 vs 2 processes.
3. **Memory**: peak resident memory (``VmHWM`` of ``/proc/self/status``) of one process
   scoring MNIST-shaped ``.npy`` data sets of growing size (the test set tiled) with DeepLift
   (1 thread); the data is memory-mapped and the result streamed to the store chunk by
   chunk, so it should stay flat.

Figures: ``examples/s`` is what the command reports (examples computed / time of the
attribution loop, summed over ranks: it leaves out start-up, model loading and checks);
``wall`` is the whole command including Python/torch start-up. The single process uses
torch's default intra-op threads, and again 1 thread; under torchrun each rank gets
``OMP_NUM_THREADS=1``. The 2-process store must be byte-identical to the 1-thread single
process (compared file by file); against the default-thread process the largest difference is
printed, since the intra-op thread count may change float rounding. On a machine shared with
other jobs the timings are noisy; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from neuron_importance.experiments.machine import machine_info
from neuron_importance.models import build_model, save_weights

_RATE = re.compile(r"in ([0-9.]+) s \(([0-9.]+) examples/s\)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _attribute(args: list[str], procs: int) -> dict:
    """Run ``neuron-importance attribute ARGS`` with 1 or more processes; parse its summary."""
    if procs == 1:
        cmd = [sys.executable, "-m", "neuron_importance", "attribute", "--quiet", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
               "-m", "neuron_importance", "attribute", "--quiet", *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"command failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    m = _RATE.search(done.stdout)
    assert m, done.stdout
    return {"processes": procs, "loop_s": float(m.group(1)),
            "examples_per_s": float(m.group(2)), "wall_s": round(wall, 2)}


def _same_store(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all((a / f).read_bytes() == (b / f).read_bytes()
                                      for f in files_a)


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _compare(name: str, data: Path, model: str, weights: Path, extra: list[str],
             work: Path, n: int) -> dict:
    print(f"\n== {name}: DeepLift, {n} examples ({data.name}, {data.stat().st_size / 2**20:.1f} MB)")
    runs = []
    # (label, processes, threads per process): torch's default threads for one process,
    # also one thread (what each torchrun rank gets), and 2 ranks
    for label, procs, threads in (("1 process", 1, None), ("1 process, 1 thread", 1, 1),
                                  ("2 processes", 2, None)):
        out = work / f"{name}-{procs}proc-{threads}.zarr"
        more = [] if threads is None else ["--threads", str(threads)]
        r = _attribute(["--model", model, "--weights", str(weights), "--data", str(data),
                        "--method", "deeplift", "--out", str(out), *extra, *more], procs)
        r["label"] = label
        r["load_1min_after"] = round(os.getloadavg()[0], 2)
        runs.append(r)
        print(f"  {label:20s} {r['examples_per_s']:8.1f} examples/s  "
              f"(loop {r['loop_s']:.1f} s, wall {r['wall_s']:.1f} s, "
              f"load {r['load_1min_after']})")
    one, two = work / f"{name}-1proc-None.zarr", work / f"{name}-2proc-None.zarr"
    one_t1 = work / f"{name}-1proc-1.zarr"
    # the promise is about processes at equal threads per process (each torchrun rank has 1);
    # a different intra-op thread count may change float rounding (oneDNN splits reductions)
    same = _same_store(one_t1, two)
    threads_diff = _max_abs_diff(one, one_t1)
    best_one = max(runs[0]["examples_per_s"], runs[1]["examples_per_s"])
    print(f"  2 processes / best 1 process: {runs[2]['examples_per_s'] / best_one:.2f}x"
          f"; 2 processes byte-identical to 1 process with 1 thread: {same}; "
          f"1 process with default threads vs 1 thread: max |diff| {threads_diff:.3g}; "
          f"store {_size_mb(one):.1f} MB on disk")
    return {"n_examples": n, "runs": runs, "byte_identical": same,
            "max_abs_diff_default_threads_vs_1": threads_diff,
            "store_mb": round(_size_mb(one), 1)}


def _max_abs_diff(a: Path, b: Path) -> float:
    """Largest absolute difference between the arrays of two stores (0.0 when identical)."""
    import zarr

    ga, gb = zarr.open_group(str(a), mode="r"), zarr.open_group(str(b), mode="r")
    worst = 0.0
    for key in ga.array_keys():
        x, y = np.asarray(ga[key][:]), np.asarray(gb[key][:])
        if x.dtype.kind in "fiu":
            worst = max(worst, float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max(
                initial=0.0)))
    return worst


_MEMORY_CHILD = """
import resource, sys
import torch
torch.set_num_threads(1)  # memory does not depend on it; fewer threads, less noise
from neuron_importance.batch import run_attribution
r = run_attribution(sys.argv[1], sys.argv[2], "deeplift", sys.argv[3], weights=sys.argv[4],
                    batch_size=64, progress=False)
# VmHWM: the peak resident size of this program. (ru_maxrss would also count the parent's
# memory at fork time, which Linux carries over the exec.)
peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")]
print(r.examples_per_second, peak[0] if peak else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _memory(images: np.ndarray, sizes: list[int], weights: Path, work: Path) -> list[dict]:
    print("\n== peak memory vs data set size (1 process, DeepLift, mnist_cnn, batch 64)")
    rows = []
    for n in sizes:
        data = work / f"mnist-{n}.npy"
        reps = -(-n // images.shape[0])
        arr = np.lib.format.open_memmap(data, mode="w+", dtype=np.float32,
                                        shape=(n, *images.shape[1:]))
        for k in range(reps):  # written piecewise: the benchmark itself stays small too
            s = k * images.shape[0]
            arr[s : min(n, s + images.shape[0])] = images[: min(n, s + images.shape[0]) - s]
        arr.flush()
        del arr
        out = work / f"mem-{n}.zarr"
        done = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, "mnist_cnn", str(data),
                               str(out), str(weights)], capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stderr[-3000:])
        rate, maxrss_kb = done.stdout.split()[-2:]
        row = {"n_examples": n, "data_mb": round(data.stat().st_size / 2**20, 1),
               "peak_rss_mb": round(int(maxrss_kb) / 1024, 1),
               "examples_per_s": round(float(rate), 1)}
        rows.append(row)
        print(f"  {n:7d} examples  data {row['data_mb']:7.1f} MB  peak RSS "
              f"{row['peak_rss_mb']:6.1f} MB  ({row['examples_per_s']:.0f} examples/s)")
        data.unlink()
        subprocess.run(["rm", "-rf", str(out)], check=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller data sets")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--workdir", metavar="DIR", help="scratch folder (default: a temp dir)")
    args = parser.parse_args()

    info = machine_info()
    print("machine:", json.dumps(info))
    mnist_n = 2000 if args.quick else 10000
    dna_n = 10000 if args.quick else 100000
    mem_sizes = [2500, 10000, 40000] if args.quick else [10000, 40000, 160000]

    from neuron_importance.data.mnist import load_mnist

    images = load_mnist("test")[0].numpy()  # (10000, 1, 28, 28) in [0, 1]
    results: dict = {"machine": info, "quick": args.quick}
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        work = Path(tmp)
        torch.manual_seed(0)
        mnist_w = save_weights(build_model("mnist_cnn"), work / "mnist_cnn.safetensors")
        torch.manual_seed(0)
        dna_w = save_weights(build_model("genomics_cnn"), work / "genomics_cnn.safetensors")

        data = work / "mnist_test.npy"
        np.save(data, images[:mnist_n])
        results["mnist"] = _compare("mnist", data, "mnist_cnn", mnist_w,
                                    ["--target", "pred", "--batch-size", "128"], work, mnist_n)

        fasta = work / "sim200.fa"
        rng = np.random.default_rng(0)
        with open(fasta, "w") as fh:  # written in blocks: 100k sequences never all in memory
            for s in range(0, dna_n, 10000):
                codes = rng.integers(0, 4, (min(dna_n, s + 10000) - s, 200))
                letters = np.array(list("ACGT"))[codes]
                fh.writelines(f">sim{s + i}\n{''.join(row)}\n" for i, row in enumerate(letters))
        results["dna"] = _compare("dna", fasta, "genomics_cnn", dna_w,
                                  ["--target", "0", "--batch-size", "128"], work, dna_n)
        for p in work.glob("*.zarr"):
            subprocess.run(["rm", "-rf", str(p)], check=True)

        results["memory"] = _memory(images, mem_sizes, mnist_w, work)
    results["load_1min_end"] = round(os.getloadavg()[0], 2)
    print(f"\nload average (1 min) at the end: {results['load_1min_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
