#!/usr/bin/env python
"""Training-step time of a KSTNetwork (GP activations) vs an MLP with the same parameter count.

Run from the repository root with the project's virtual environment::

    python benchmarks/flexible.py            # default run
    python benchmarks/flexible.py --quick    # smoke run (a few seconds)
    python benchmarks/flexible.py --json bench.json --repeats 41

One training step = ``zero_grad`` + forward + MSE loss + backward + ``Adam.step`` on a fixed
batch (float32, CPU, random regression targets). Cases (``n`` inputs, batch ``N``): a
banknote-sized network (``n = 4``, ``H = 9``, ``m = 8`` control points) and a wider one
(``n = 16``, ``H = 33``). The MLP has one ReLU hidden layer whose width is chosen so that its
parameter count matches the KST network's (within one hidden unit). pykan (``kan``) and
efficient-kan (``efficient_kan``) with the same widths are timed when importable, otherwise
reported as "not installed".

Methodology (as ``benchmarks/attribution.py``): ``--warmup`` steps first, then the candidates
take turns, one step each per round, over ``--repeats`` rounds, the order reversed every other
round, so that drift of the machine hits all equally. Wall time per step by
``time.perf_counter``: median, interquartile range (IQR). Ratios are ratios of medians; the
bracket is the IQR of the per-round (paired) ratios. Goals: KST ≤ 3× the MLP step; KST ≥ 3×
faster than pykan/efficient-kan. ``--profile`` prints the top of a cProfile of KST steps.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from neuron_importance.experiments.machine import machine_info
from neuron_importance.flexible import KSTNetwork

GOAL_VS_MLP = 3.0
GOAL_VS_KAN = 3.0


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


def matched_mlp(n_in: int, n_out: int, target: int) -> nn.Module:
    h = max(1, round((target - n_out) / (n_in + 1 + n_out)))
    return nn.Sequential(nn.Linear(n_in, h), nn.ReLU(), nn.Linear(h, n_out))


def optional_kans(n_in: int, width: int, n_out: int) -> dict[str, nn.Module | str]:
    out: dict[str, nn.Module | str] = {}
    try:
        from kan import KAN  # pykan
        out["pykan"] = KAN(width=[n_in, width, n_out], grid=5, k=3, auto_save=False)
    except ImportError:
        out["pykan"] = "not installed"
    except Exception as e:  # noqa: BLE001 - report, do not crash the benchmark
        out["pykan"] = f"failed: {type(e).__name__}: {e}"
    try:
        from efficient_kan import KAN as EKAN
        out["efficient_kan"] = EKAN([n_in, width, n_out])
    except ImportError:
        out["efficient_kan"] = "not installed"
    except Exception as e:  # noqa: BLE001
        out["efficient_kan"] = f"failed: {type(e).__name__}: {e}"
    return out


def make_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        opt.step()
    return step


def iqr(v: list[float]) -> tuple[float, float]:
    if len(v) < 4:
        return min(v), max(v)
    q = statistics.quantiles(v, n=4)
    return q[0], q[2]


def time_interleaved(steps: dict[str, Callable[[], None]], warmup: int, repeats: int):
    for f in steps.values():
        for _ in range(warmup):
            f()
    names = list(steps)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for k in (names if r % 2 == 0 else names[::-1]):
            t0 = time.perf_counter()
            steps[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def run_case(name: str, n_in: int, batch: int, n_control: int, args) -> dict:
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    kst = KSTNetwork(n_in, 1, n_control=n_control, generator=g)
    x = torch.randn(batch, n_in, generator=g)
    y = torch.randn(batch, 1, generator=g)
    kst.fit_normalisation(x)
    mlp = matched_mlp(n_in, 1, n_params(kst))
    models: dict[str, nn.Module] = {"kst": kst, "mlp": mlp}
    notes = {}
    for k, v in optional_kans(n_in, kst.width, 1).items():
        if isinstance(v, str):
            notes[k] = v
        else:
            models[k] = v
    steps = {k: make_step(m, x, y) for k, m in models.items()}
    times = time_interleaved(steps, args.warmup, args.repeats)
    res = {"case": name, "n_inputs": n_in, "width": kst.width, "n_control": n_control,
           "batch": batch, "params": {k: n_params(m) for k, m in models.items()},
           "median_ms": {}, "iqr_ms": {}, "ratios": {}, "not_run": notes}
    for k, t in times.items():
        res["median_ms"][k] = 1e3 * statistics.median(t)
        lo, hi = iqr(t)
        res["iqr_ms"][k] = (1e3 * lo, 1e3 * hi)
    paired = [a / b for a, b in zip(times["kst"], times["mlp"])]
    r = res["median_ms"]["kst"] / res["median_ms"]["mlp"]
    res["ratios"]["kst/mlp"] = {"ratio": r, "paired_iqr": iqr(paired), "goal": f"<= {GOAL_VS_MLP}",
                                "status": "PASS" if r <= GOAL_VS_MLP else "MISS"}
    for k in ("pykan", "efficient_kan"):
        if k in times:
            r = res["median_ms"][k] / res["median_ms"]["kst"]
            res["ratios"][f"{k}/kst"] = {
                "ratio": r, "paired_iqr": iqr([a / b for a, b in zip(times[k], times["kst"])]),
                "goal": f">= {GOAL_VS_KAN}", "status": "PASS" if r >= GOAL_VS_KAN else "MISS"}
    if args.profile:
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(max(5, args.repeats // 2)):
            steps["kst"]()
        pr.disable()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
        res["profile"] = s.getvalue()
    return res


def print_case(res: dict) -> None:
    print(f"\n## {res['case']}: n={res['n_inputs']}, H={res['width']}, m={res['n_control']}, "
          f"batch={res['batch']}")
    print(f"{'model':<15}{'params':>8}{'median ms':>12}{'IQR ms':>20}")
    for k, med in res["median_ms"].items():
        lo, hi = res["iqr_ms"][k]
        print(f"{k:<15}{res['params'][k]:>8}{med:>12.3f}{f'[{lo:.3f}, {hi:.3f}]':>20}")
    for k, v in res["not_run"].items():
        print(f"{k:<15}{'':>8}{v:>12}")
    for k, v in res["ratios"].items():
        lo, hi = v["paired_iqr"]
        print(f"ratio {k:<16} {v['ratio']:6.2f}  (paired IQR [{lo:.2f}, {hi:.2f}])  goal "
              f"{v['goal']}: {v['status']}")
    for k in ("pykan", "efficient_kan"):
        if k in res["not_run"]:
            print(f"ratio {k}/kst: {res['not_run'][k]}")
    if "profile" in res:
        print(res["profile"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small batches, few repeats")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    ap.add_argument("--profile", action="store_true", help="cProfile the KST steps")
    ap.add_argument("--json", default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.repeats = args.repeats or (15 if args.quick else 101)
    args.warmup = args.warmup or (3 if args.quick else 10)
    cases = ([("banknote_size", 4, 256, 8)] if args.quick else
             [("banknote_size", 4, 1097, 8), ("wide", 16, 1024, 8)])
    info = machine_info()
    print("# KSTNetwork training-step benchmark")
    print(", ".join(f"{k}={v}" for k, v in info.items()))
    print(f"repeats={args.repeats}, warmup={args.warmup}, float32, forward+backward+Adam step")
    results = [run_case(*c, args) for c in cases]
    for r in results:
        print_case(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "args": vars(args), "cases": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
