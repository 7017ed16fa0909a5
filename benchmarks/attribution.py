#!/usr/bin/env python
"""Time our attribution methods next to Captum 0.9's, on the same model, batch and machine.

Run from the repository root with the project's virtual environment::

    python benchmarks/attribution.py            # default run (~45 s on 2 idle cores)
    python benchmarks/attribution.py --quick    # smoke run (a few seconds; small batch)
    python benchmarks/attribution.py --json bench.json --repeats 21

Two models, both with random weights in eval mode and one ``nn.Module`` per use of every
layer (so that Captum's hook-based DeepLift is correct on them):

* ``mnist_cnn``: the DeepLIFT paper's MNIST CNN (Conv2d 1→32 k4 s2, ReLU, Conv2d 32→64 k4 s2,
  ReLU, Dropout, Flatten, Linear 1600→128, ReLU, Dropout, Linear 128→10), inputs
  ``(batch, 1, 28, 28)`` uniform in [0, 1);
* ``genomics_cnn``: Conv1d 4→50 k11, ReLU, Conv1d 50→50 k11, ReLU, mean over length,
  Linear 50→50, ReLU, Linear 50→3, inputs one-hot ``(batch, 4, 200)``.

Zero baselines, target class 0, float32. Methods: our ``DeepLift`` (rule ``rescale``; also
``reveal_cancel`` and ``genomics_default`` for information), ``IntegratedGradients``
(``n_steps=50``, ``gausslegendre``) and ``Saliency``, next to Captum's ``DeepLift``,
``IntegratedGradients`` and ``Saliency`` with the same arguments.

Methodology: every candidate is called ``--warmup`` times first; then the candidates of one
group are called in turn, once each per round, over ``--repeats`` rounds (``--ig-repeats``
for the expensive Integrated Gradients pair), the order of a round being reversed every
other round, so that ours and Captum's alternate and slow drift of the machine (other
processes, frequency scaling) hits both equally. Each call is timed with
``time.perf_counter``; the table shows the median and the interquartile range (IQR) of the
wall time per call, plus the fastest call and the median process CPU time (all threads; on a
busy machine it moves less than the wall time). Ratios are ratios of median wall times; the
bracket next to each is the IQR of the per-round (paired) ratios, a measure of how far one
can trust it; a goal is marked as not settled when that IQR straddles it.

Before timing, the script checks that our results and Captum's agree (max abs difference,
also relative to the largest attribution), so the timings compare equal work.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

try:
    import captum
    from captum.attr import DeepLift as CaptumDeepLift
    from captum.attr import IntegratedGradients as CaptumIntegratedGradients
    from captum.attr import Saliency as CaptumSaliency
except ImportError:  # pragma: no cover - captum is a test extra
    sys.exit("benchmarks/attribution.py needs captum==0.9.0: pip install -e '.[test]'")

from neuron_importance.attribution.deeplift import DeepLift
from neuron_importance.attribution.gradient import Saliency
from neuron_importance.attribution.integrated_gradients import IntegratedGradients
from neuron_importance.experiments.machine import cpu_model

TARGET = 0
IG_STEPS = 50
IG_METHOD = "gausslegendre"
# Relative agreement (max |ours − captum| / max |captum|) above which the check says DIFFERS.
AGREEMENT_RTOL = 1e-3


# ---------------------------------------------------------------------------------- models
class MnistCNN(nn.Module):
    """The DeepLIFT paper's MNIST CNN, one module per use (Captum's DeepLift needs that)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, kernel_size=4, stride=2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 64, kernel_size=4, stride=2)
        self.relu2 = nn.ReLU()
        self.drop1 = nn.Dropout()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(1600, 128)
        self.relu3 = nn.ReLU()
        self.drop2 = nn.Dropout()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.drop1(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        return self.fc2(self.drop2(self.relu3(self.fc1(self.flatten(x)))))


class GenomicsCNN(nn.Module):
    """Two Conv1d + ReLU, global mean over length, two dense layers (3 tasks)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(4, 50, kernel_size=11)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv1d(50, 50, kernel_size=11)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(50, 50)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(50, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu2(self.conv2(self.relu1(self.conv1(x)))).mean(dim=2)
        return self.fc2(self.relu3(self.fc1(h)))


@dataclass
class Case:
    name: str
    model: nn.Module
    inputs: Tensor
    baselines: Tensor

    @property
    def shape(self) -> str:
        return "x".join(str(s) for s in self.inputs.shape)


MODEL_NAMES = ("mnist_cnn", "genomics_cnn")


def make_cases(batch: int, seed: int, baseline: str = "zeros") -> list[Case]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    mnist = MnistCNN().eval()
    x_mnist = torch.rand(batch, 1, 28, 28, generator=g)
    torch.manual_seed(seed + 1)
    genomics = GenomicsCNN().eval()
    bases = torch.randint(0, 4, (batch, 200), generator=g)
    x_dna = F.one_hot(bases, 4).permute(0, 2, 1).float().contiguous()
    if baseline == "zeros":
        b_mnist, b_dna = torch.zeros_like(x_mnist), torch.zeros_like(x_dna)
    else:  # a different reference per example: no shared-row shortcut for the reference
        b_mnist = torch.rand(batch, 1, 28, 28, generator=g)
        b_dna = F.one_hot(torch.randint(0, 4, (batch, 200), generator=g), 4).permute(
            0, 2, 1).float().contiguous()
    return [
        Case("mnist_cnn", mnist, x_mnist, b_mnist),
        Case("genomics_cnn", genomics, x_dna, b_dna),
    ]


# ------------------------------------------------------------------------------ candidates
@dataclass
class Candidate:
    name: str
    fn: Callable[[], Tensor]
    info: str = ""


def candidates(case: Case) -> tuple[list[tuple[Candidate, ...]], list[tuple[Candidate, ...]]]:
    """``(fast_groups, ig_groups)``: tuples of candidates compared against each other."""
    m, x, b = case.model, case.inputs, case.baselines
    ours_dl = DeepLift(m, rule="rescale")
    ours_rc = DeepLift(m, rule="reveal_cancel")
    ours_gd = DeepLift(m, rule="genomics_default")
    ours_sal = Saliency(m)
    ours_ig = IntegratedGradients(m)
    cap_dl = CaptumDeepLift(m)
    cap_sal = CaptumSaliency(m)
    cap_ig = CaptumIntegratedGradients(m)

    fast = [
        (
            Candidate("ours_deeplift", lambda: ours_dl.attribute(x, b, TARGET), "rule=rescale"),
            Candidate("captum_deeplift", lambda: cap_dl.attribute(x, b, TARGET), "Rescale"),
        ),
        (
            Candidate("ours_saliency", lambda: ours_sal.attribute(x, TARGET)),
            Candidate("captum_saliency", lambda: cap_sal.attribute(x, TARGET)),
        ),
        (
            Candidate("ours_deeplift_reveal_cancel", lambda: ours_rc.attribute(x, b, TARGET),
                      "info"),
            Candidate("ours_deeplift_genomics_default", lambda: ours_gd.attribute(x, b, TARGET),
                      "info"),
        ),
    ]
    ig = [
        (
            Candidate("ours_ig", lambda: ours_ig.attribute(
                x, b, TARGET, n_steps=IG_STEPS, method=IG_METHOD), f"n_steps={IG_STEPS}"),
            Candidate("captum_ig", lambda: cap_ig.attribute(
                x, b, TARGET, n_steps=IG_STEPS, method=IG_METHOD), f"n_steps={IG_STEPS}"),
        ),
    ]
    return fast, ig


# ------------------------------------------------------------------------------- agreement
@dataclass
class Agreement:
    pair: str
    max_abs_diff: float
    max_abs_ref: float
    caught: list[str] = field(default_factory=list)

    @property
    def rel(self) -> float:
        return self.max_abs_diff / self.max_abs_ref if self.max_abs_ref > 0 else self.max_abs_diff

    @property
    def ok(self) -> bool:
        return self.rel <= AGREEMENT_RTOL


_CAPTUM_CHATTER = ("did not already require gradients", "Setting forward, backward hooks")


def _captum_chatter(w: warnings.WarningMessage) -> bool:
    """Captum's routine notices (it sets requires_grad and hooks on every call): not shown."""
    return any(s in str(w.message) for s in _CAPTUM_CHATTER)


def check_agreement(fast, ig) -> list[Agreement]:
    by_name = {c.name: c for grp in fast + ig for c in grp}
    pairs = [("ours_deeplift", "captum_deeplift"), ("ours_ig", "captum_ig"),
             ("ours_saliency", "captum_saliency")]
    out = []
    for ours, theirs in pairs:
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            a = by_name[ours].fn().detach()
            c = by_name[theirs].fn().detach()
        msgs = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:110]}"
                       for w in rec if not _captum_chatter(w)})
        out.append(Agreement(f"{ours} vs {theirs}", float((a - c).abs().max()),
                             float(c.abs().max()), msgs))
    return out


# ---------------------------------------------------------------------------------- timing
def _call(c: Candidate) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of one call; cpu is the process CPU time (all threads)."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    c.fn()
    t1 = time.perf_counter()
    return t1 - t0, time.process_time() - c0


def time_interleaved(groups: list[tuple[Candidate, ...]], repeats: int, warmup: int
                     ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call wall and CPU times; each round calls every candidate once, in an order that
    is reversed every other round (so ours and Captum's alternate in first place)."""
    seq = [c for grp in groups for c in grp]
    wall: dict[str, list[float]] = {c.name: [] for c in seq}
    cpu: dict[str, list[float]] = {c.name: [] for c in seq}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(warmup):
            for c in seq:
                c.fn()
        for r in range(repeats):
            for c in (seq if r % 2 == 0 else seq[::-1]):
                w, u = _call(c)
                wall[c.name].append(w)
                cpu[c.name].append(u)
    return wall, cpu


def quartiles(v: list[float]) -> tuple[float, float, float]:
    if len(v) == 1:
        return v[0], v[0], v[0]
    q = statistics.quantiles(v, n=4, method="inclusive")
    return q[0], statistics.median(v), q[2]


# ---------------------------------------------------------------------------------- ratios
# (name, numerator, denominator, goal kind, goal) — kind ">=" / "<=" / None (information).
RATIOS = [
    ("captum_deeplift / ours_deeplift", "captum_deeplift", "ours_deeplift", ">=", 1.0),
    ("ours_deeplift / ours_saliency", "ours_deeplift", "ours_saliency", "<=", 1.6),
    ("captum_ig / ours_ig", "captum_ig", "ours_ig", None, None),
    ("captum_saliency / ours_saliency", "captum_saliency", "ours_saliency", None, None),
    ("ours_deeplift_reveal_cancel / ours_deeplift", "ours_deeplift_reveal_cancel",
     "ours_deeplift", None, None),
]


def ratio_stats(times: dict[str, list[float]], num: str, den: str) -> dict[str, float]:
    a, b = times[num], times[den]
    paired = [x / y for x, y in zip(a, b)]
    lo, _, hi = quartiles(paired)
    return {"ratio": statistics.median(a) / statistics.median(b), "paired_q1": lo,
            "paired_q3": hi}


def verdict(rs: dict[str, float], kind: str | None, goal: float | None) -> str:
    """PASS/MISS of the ratio of medians; flagged when the paired IQR straddles the goal."""
    if kind is None:
        return ""
    ok = rs["ratio"] >= goal if kind == ">=" else rs["ratio"] <= goal
    text = f"goal {kind} {goal:g}: {'PASS' if ok else 'MISS'}"
    if rs["paired_q1"] < goal < rs["paired_q3"]:
        text += " (paired IQR straddles the goal: not settled by this run)"
    return text


# ----------------------------------------------------------------------------------- misc
def print_machine(info: dict[str, object]) -> None:
    """The machine line and the other-load line every benchmark starts with."""
    print(f"machine: {info['cpu']} ({info['logical_cpus']} logical CPUs), torch threads "
          f"{info['torch_threads']}, torch {info['torch']}, captum {info['captum']}, "
          f"python {info['python']}")
    busy = info["busy_start"]
    print(f"other load at start: {'?' if busy is None else f'{busy:.0%}'} of the CPUs busy, "
          f"1-min load average {info['loadavg_start']}")


def machine_info(threads: int) -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "requested_threads": threads,
        "torch": torch.__version__,
        "captum": captum.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": _loadavg(),
        "busy_start": busy_fraction(),
    }


def busy_fraction(seconds: float = 0.5) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` (from /proc/stat) while this process sleeps:
    the load other processes put on the machine. None where /proc/stat is missing."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            v = [int(t) for t in fh.readline().split()[1:9]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return round(1 - (i1 - i0) / (t1 - t0), 3) if t1 > t0 else None


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def profile_ours(case: Case, calls: int, top: int) -> str:
    """cProfile of ``calls`` calls of our Rescale DeepLift (cumulative time, top entries)."""
    dl = DeepLift(case.model, rule="rescale")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dl.attribute(case.inputs, case.baselines, TARGET)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(calls):
            dl.attribute(case.inputs, case.baselines, TARGET)
        prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    return buf.getvalue()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch 8, 3 rounds, 1 IG round, 1 warm-up (a few seconds)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed rounds for DeepLift/Saliency (default 15; 3 with --quick)")
    p.add_argument("--ig-repeats", type=int, default=None,
                   help="timed rounds for the Integrated Gradients pair (default 5; 1 with "
                   "--quick)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed calls of every candidate first (default 2; 1 with --quick)")
    p.add_argument("--batch", type=int, default=None,
                   help="examples per batch (default 128; 8 with --quick)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--models", default="mnist_cnn,genomics_cnn",
                   help="comma-separated subset of mnist_cnn,genomics_cnn")
    p.add_argument("--skip-ig", action="store_true", help="do not time Integrated Gradients")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", choices=("zeros", "random"), default="zeros",
                   help="zeros (one reference shared by the batch) or random (one per example)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--profile", type=int, default=0, metavar="TOP",
                   help="after timing, cProfile our Rescale DeepLift and print the TOP entries")
    p.add_argument("--fail-on-miss", action="store_true",
                   help="exit with status 1 if a goal is missed or results disagree")
    args = p.parse_args(argv)
    defaults = {"repeats": (15, 3), "ig_repeats": (5, 1), "warmup": (2, 1), "batch": (128, 8)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    for key in ("repeats", "ig_repeats", "batch", "threads"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be non-negative")
    args.models = [s.strip() for s in args.models.split(",") if s.strip()]
    unknown = sorted(set(args.models) - set(MODEL_NAMES))
    if unknown or not args.models:
        p.error(f"--models: unknown {', '.join(unknown) or '(none given)'}; choose from "
                f"{', '.join(MODEL_NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    info = machine_info(args.threads)
    print_machine(info)
    busy = info["busy_start"]
    if busy is not None and busy > 0.25:
        print("note: other processes are using the CPUs. With --threads 2 on a shared 2-core "
              "machine every parallel op can wait a scheduler tick for its second thread, so "
              "times (ours more: it runs more, smaller ops) swell and IQRs widen; rerun on an "
              "idle machine or compare with --threads 1")
    print(f"settings: batch {args.batch}, {args.warmup} warm-up call(s), {args.repeats} "
          f"interleaved rounds ({args.ig_repeats} for IG), target {TARGET}, {args.baseline} baselines, "
          f"float32{' [--quick]' if args.quick else ''}")

    cases = [c for c in make_cases(args.batch, args.seed, args.baseline)
             if c.name in args.models]
    results: dict[str, object] = {"machine": info, "settings": vars(args).copy(), "models": {}}
    failed = False
    for case in cases:
        fast, ig = candidates(case)
        busy_now = busy_fraction()
        load_text = "?" if busy_now is None else f"{busy_now:.0%}"
        print(f"\n== {case.name}: input {case.shape} (other load now: {load_text} of the CPUs "
              "busy) ==")
        # One call of every compared candidate; it doubles as the IG pair's warm-up.
        agreement = check_agreement(fast, ig)
        if args.skip_ig:
            ig = []
        print("agreement (ours vs Captum, same inputs):")
        for ag in agreement:
            flag = "OK" if ag.ok else "DIFFERS"
            print(f"  {ag.pair:<36} max|diff| {ag.max_abs_diff:.3g}  "
                  f"(max|attr| {ag.max_abs_ref:.3g}, relative {ag.rel:.2g})  {flag}")
            for msg in ag.caught:
                print(f"      warning: {msg}")
            failed |= not ag.ok

        times, cpu = time_interleaved(fast, args.repeats, args.warmup)
        if ig:
            ig_wall, ig_cpu = time_interleaved(ig, args.ig_repeats, 0)
            times.update(ig_wall)
            cpu.update(ig_cpu)
        rows = [c for grp in fast + ig for c in grp]
        print(f"\n  {'method (wall time per call)':<32}{'median ms':>11}{'IQR ms':>21}"
              f"{'min ms':>10}{'CPU ms':>10}{'n':>4}  note")
        stats = {}
        for c in rows:
            q1, med, q3 = quartiles(times[c.name])
            cpu_med = statistics.median(cpu[c.name])
            stats[c.name] = {"median_s": med, "q1_s": q1, "q3_s": q3,
                             "min_s": min(times[c.name]), "cpu_median_s": cpu_med,
                             "n": len(times[c.name]), "times_s": times[c.name],
                             "cpu_times_s": cpu[c.name]}
            print(f"  {c.name:<32}{med * 1e3:>11.1f}{f'{q1 * 1e3:.1f} – {q3 * 1e3:.1f}':>21}"
                  f"{min(times[c.name]) * 1e3:>10.1f}{cpu_med * 1e3:>10.1f}"
                  f"{len(times[c.name]):>4}  {c.info}")
        print("\n  ratios (of medians; [IQR of the per-round paired ratios]):")
        ratios = {}
        for label, num, den, kind, goal in RATIOS:
            if num not in times or den not in times:
                continue
            rs = ratio_stats(times, num, den)
            v = verdict(rs, kind, goal)
            rs["goal"] = None if kind is None else f"{kind} {goal:g}"
            rs["pass"] = None if kind is None else ": PASS" in v
            ratios[label] = rs
            failed |= rs["pass"] is False
            print(f"  {label:<44}{rs['ratio']:>7.2f}  [{rs['paired_q1']:.2f} – "
                  f"{rs['paired_q3']:.2f}]  {v}")
        results["models"][case.name] = {
            "input_shape": list(case.inputs.shape),
            "busy_before": busy_now,
            "agreement": [{"pair": a.pair, "max_abs_diff": a.max_abs_diff,
                           "max_abs_attr": a.max_abs_ref, "relative": a.rel, "ok": a.ok,
                           "warnings": a.caught} for a in agreement],
            "timings": stats,
            "ratios": ratios,
        }
        if args.profile:
            print(f"\n  cProfile of ours_deeplift on {case.name} (5 calls):")
            print(profile_ours(case, 5, args.profile))

    elapsed = time.perf_counter() - t_start
    results["elapsed_s"] = elapsed
    results["loadavg_end"] = _loadavg()
    results["busy_end"] = busy_fraction()
    busy_end = results["busy_end"]
    print(f"\ntotal benchmark time {elapsed:.1f} s; other load at the end: "
          f"{'?' if busy_end is None else f'{busy_end:.0%}'} of the CPUs busy, 1-min load "
          f"average {results['loadavg_end']}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.json}")
    return 1 if (failed and args.fail_on_miss) else 0


if __name__ == "__main__":
    sys.exit(main())
