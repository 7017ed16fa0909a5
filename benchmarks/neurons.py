#!/usr/bin/env python
"""Time our neuron-importance methods next to Captum 0.9's, on the same model, batch and machine.

Run from the repository root with the project's virtual environment::

    python benchmarks/neurons.py            # default run (a few minutes on 2 idle cores)
    python benchmarks/neurons.py --quick    # smoke run (batch 8, fewer rounds)
    python benchmarks/neurons.py --json neurons.json

Model: ``mnist_cnn`` (Conv2d 1→32 k4 s2, ReLU, Conv2d 32→64 k4 s2, ReLU, Dropout, Flatten,
Linear 1600→128, ReLU, Dropout, Linear 128→10) in eval mode. ``--model auto`` (default) uses
the demo's cached trained weights and MNIST test images when both are present, else random
weights and inputs uniform in [0, 1) (``--model random`` forces that). Zero baselines; the
target is each example's predicted class. The layer is ``--layer`` (default ``3``: the ReLU
after the second convolution, output 64×5×5 = 1600 neurons).

What is compared (one run, same batch):

1. **Equal accuracy.** The completeness error of a layer attribution is
   ``mean_examples |Σ_neurons TC − (F(x) − F(x′))| / mean_examples |F(x) − F(x′)|``, with
   ``F(x) − F(x′)`` from plain forward passes. Captum's ``LayerConductance(method=
   "riemann_trapezoid", n_steps=M)`` (its only rule with both path ends, i.e. our ``left``)
   sets the target error at ``M = --n-steps``; our ``TotalConductance(method="trapezoid")``
   runs at the smallest ``m`` of a grid whose error is at most Captum's, for that ``m`` and
   every larger grid value up to ``M``. Goal: Captum's time / ours ≥ 1.5. (Gauss–Legendre
   with exact path derivatives is shown for information.)
2. **Same n_steps**: Captum at ``M`` vs our trapezoid at ``M`` (goal ≥ 1.0), and our ``left``
   at ``M`` (the identical computation; agreement is checked first).
3. **The floor**: our trapezoid TC at ``M`` vs our ``IntegratedGradients`` of the inputs with
   ``n_steps=M`` (``riemann_trapezoid``; TC evaluates ``M + 1`` points): goal ≤ 1.2.
4. **NeuronConductance of 32 neurons** (the 32 with the largest mean |TC| on the batch, so
   none is skipped as inactive) vs Captum's ``NeuronConductance`` called once per neuron
   (both ``method="gausslegendre"``, ``n_steps=M``). Captum takes one full path sweep per
   neuron, so only ``--captum-neurons`` of them are timed and the time is **extrapolated**
   linearly to 32 (printed as such). Goal ≥ 10× faster.
5. **Every hidden layer at once**: ``LayersTotalConductance`` of all the model's ReLU layers
   in one call vs one ``TotalConductance`` call per layer and Captum's ``LayerConductance``
   once per layer (all ``left`` / ``riemann_trapezoid``, ``n_steps=M``; equality with the
   per-layer calls is checked first). One sweep serves every layer, so the goal is ≥ 1.5×
   against our per-layer calls and ≥ 2× against Captum's.
6. **Peak memory** of one TC call with and without ``internal_batch_size`` (and Captum's, for
   reference), each in a fresh subprocess after a small warm-up call: the peak resident set
   during the call minus the resident set just before it. The peak is the kernel's VmHWM
   (what ``resource.getrusage().ru_maxrss`` reports), reset before the call by writing 5 to
   ``/proc/self/clear_refs``; where that is refused, a thread samples VmRSS every millisecond.
   ``tracemalloc`` does not see torch's CPU allocations and torch keeps no CPU allocator
   statistics, so this OS figure (which includes allocator caching) is what is reported.

Timing method (as ``benchmarks/attribution.py``): warm-up calls, then interleaved rounds (every
candidate of a group once per round, the order reversed every other round); medians and
interquartile ranges of wall time; ratios of medians with the IQR of the per-round ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    from captum.attr import LayerConductance as CaptumLayerConductance
    from captum.attr import NeuronConductance as CaptumNeuronConductance
except ImportError:  # pragma: no cover - captum is a test extra
    sys.exit("benchmarks/neurons.py needs captum==0.9.0: pip install -e '.[test]'")

from attribution import (  # noqa: E402  (sibling benchmark script: shared timing helpers)
    Candidate,
    _loadavg,
    busy_fraction,
    machine_info,
    print_machine,
    quartiles,
    ratio_stats,
    time_interleaved,
    verdict,
)

from neuron_importance.attribution.integrated_gradients import IntegratedGradients
from neuron_importance.neurons.conductance import (
    LayersTotalConductance,
    NeuronConductance,
    TotalConductance,
)

N_NEURONS = 32
STEP_GRID = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100)
MEMORY_CHUNK = 512  # rows per pass for the internal_batch_size setting


# ------------------------------------------------------------------------------- the case
def load_case(kind: str, batch: int, seed: int) -> tuple[nn.Module, Tensor, str]:
    """``(model, inputs, description)``; see the module docstring for ``kind``."""
    from neuron_importance.models import build_model, cache_path, load_model

    if kind in ("auto", "trained"):
        try:
            from neuron_importance.cli.demo import SETTINGS, find_mnist
            from neuron_importance.data.mnist import load_mnist

            cfg = SETTINGS[("mnist", False)]
            config = {"dataset": "mnist", "n_train": cfg["n_train"], **cfg}
            weights = cache_path("mnist_cnn", config, Path.cwd() / ".cache" / "neuron-importance")
            mnist_dir = find_mnist(None)
            if weights.exists() and mnist_dir is not None:
                model = load_model("mnist_cnn", weights).eval()
                x, _ = load_mnist("test", data_dir=mnist_dir)
                g = torch.Generator().manual_seed(seed)
                x = x[torch.randperm(len(x), generator=g)[:batch]].contiguous()
                return model, x, (f"mnist_cnn, trained weights ({weights.name}), {batch} MNIST "
                                  "test images")
            missing = "cached weights" if not weights.exists() else "MNIST files"
        except (FileNotFoundError, ValueError) as err:
            missing = str(err)
        if kind == "trained":
            sys.exit(f"--model trained: {missing} not found (run `neuron-importance demo` first)")
    torch.manual_seed(seed)
    model = build_model("mnist_cnn").eval()
    x = torch.rand(batch, 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    return model, x, f"mnist_cnn, random weights (seed {seed}), {batch} inputs uniform in [0, 1)"


def output_change(model: nn.Module, x: Tensor, target: Tensor) -> Tensor:
    with torch.no_grad():
        fx = model(x).gather(1, target.view(-1, 1)).view(-1)
        fb = model(torch.zeros_like(x[:1]))[0, target]
    return (fx - fb).double()


def rel_error(attr: Tensor, change: Tensor) -> float:
    delta = attr.reshape(len(change), -1).sum(dim=1).double() - change
    return float(delta.abs().mean() / change.abs().mean().clamp_min(1e-12))


# ------------------------------------------------------------------------------- accuracy
def error_curves(model, layer_mod, layer, x, target, change, max_steps, grid):
    """Completeness error of Captum (riemann_trapezoid) at ``max_steps`` and of our rules
    over ``grid``."""
    zero = torch.zeros_like(x[:1])
    cap = CaptumLayerConductance(model, layer_mod)
    ours = TotalConductance(model, layer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cap_attr = cap.attribute(x, baselines=zero, target=target, n_steps=max_steps,
                                 method="riemann_trapezoid")
        errs: dict[str, dict[int, float]] = {"trapezoid": {}, "gausslegendre": {}, "left": {}}
        for m in grid:
            for rule in errs:
                a = ours.attribute(x, baselines=zero, target=target, n_steps=m, method=rule,
                                   completeness_tol=None)
                errs[rule][m] = rel_error(a, change)
        left = ours.attribute(x, baselines=zero, target=target, n_steps=max_steps,
                              method="left", completeness_tol=None)
    cap_attr = cap_attr.detach()
    agreement = float((left - cap_attr).abs().max()), float(cap_attr.abs().max())
    return rel_error(cap_attr, change), errs, agreement


def steps_for(errs: dict[int, float], goal: float) -> int | None:
    """Smallest grid ``m`` whose error, and that of every larger grid value, is ≤ ``goal``."""
    best = None
    for m in sorted(errs, reverse=True):
        if errs[m] <= goal:
            best = m
        else:
            break
    return best


# ------------------------------------------------------------------------------- memory
def memory_child(setting: str, kind: str, batch: int, seed: int, n_steps: int, layer: str) -> None:
    """Run in a fresh process: one call of ``setting``; print its peak RSS rise as JSON."""
    model, x, _ = load_case(kind, batch, seed)
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    zero = torch.zeros_like(x[:1])
    who, ibs_text = setting.split(":")
    ibs = None if ibs_text == "None" else int(ibs_text)
    if who == "ours":
        tc = TotalConductance(model, layer)

        def call(xx, tt):
            return tc.attribute(xx, baselines=zero, target=tt, n_steps=n_steps,
                                method="trapezoid", internal_batch_size=ibs,
                                completeness_tol=None)
    else:
        lc = CaptumLayerConductance(model, dict(model.named_modules())[layer])

        def call(xx, tt):
            return lc.attribute(xx, baselines=zero, target=tt, n_steps=n_steps,
                                method="riemann_trapezoid", internal_batch_size=ibs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        call(x[:1], target[:1])  # warm-up: kernels, lazy imports
        gc.collect()
        how = _reset_peak()
        before = _status_kib("VmRSS")
        sampler = None if how == "clear_refs" else _Sampler()
        call(x, target)
        peak = _status_kib("VmHWM") if sampler is None else sampler.stop()
    print(json.dumps({"setting": setting, "rss_before_mib": before / 1024,
                      "peak_mib": peak / 1024, "rise_mib": (peak - before) / 1024,
                      "method": how}))


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def _reset_peak() -> str:
    """Reset the kernel's peak-RSS mark (VmHWM, which also feeds ``getrusage().ru_maxrss``) by
    writing 5 to ``/proc/self/clear_refs`` (Linux ≥ 4.0); else fall back to sampling."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        if _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024:
            return "clear_refs"
    except OSError:
        pass
    return "sampling"


class _Sampler:
    """Polls VmRSS every millisecond from a thread (torch ops release the GIL)."""

    def __init__(self) -> None:
        import threading

        self.peak = _status_kib("VmRSS")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _status_kib("VmRSS"))
            time.sleep(0.001)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, _status_kib("VmRSS"))


def measure_memory(args, rows: int) -> list[dict]:
    out = []
    settings = ["ours:None", f"ours:{MEMORY_CHUNK}", "captum:None", f"captum:{MEMORY_CHUNK}"]
    for s in settings:
        cmd = [sys.executable, __file__, "--memory-child", s, "--model", args.model,
               "--memory-batch", str(args.memory_batch), "--seed", str(args.seed),
               "--n-steps", str(args.n_steps), "--layer", args.layer,
               "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            out.append({"setting": s, "error": proc.stderr.strip().splitlines()[-1:]})
            continue
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"\npeak memory of one call, batch {args.memory_batch} x {args.n_steps + 1} points = "
          f"{rows} rows (peak RSS during the call minus the RSS before it, fresh process each):")
    for r in out:
        if "error" in r:
            print(f"  {r['setting']:<22} failed: {r['error']}")
            continue
        who, ibs = r["setting"].split(":")
        name = "ours TotalConductance" if who == "ours" else "Captum LayerConductance"
        chunk = "all rows at once" if ibs == "None" else f"internal_batch_size={ibs}"
        print(f"  {name:<25} {chunk:<26} {r['rise_mib']:>8.1f} MiB  (RSS before "
              f"{r['rss_before_mib']:.0f} MiB; peak by {r['method']})")
    return out


# ------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch 8, 2 rounds (1 for neuron conductance), 1 Captum "
                   "neuron, memory batch 32")
    p.add_argument("--batch", type=int, default=None, help="examples (default 32; 8 quick)")
    p.add_argument("--n-steps", type=int, default=50, help="M: Captum's n_steps (default 50)")
    p.add_argument("--layer", default="3", help="dotted layer name in mnist_cnn (default 3)")
    p.add_argument("--model", choices=("auto", "trained", "random"), default="auto")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved rounds for the layer methods (default 7; 2 quick)")
    p.add_argument("--nc-repeats", type=int, default=None,
                   help="rounds for neuron conductance (default 3; 1 quick)")
    p.add_argument("--captum-neurons", type=int, default=None,
                   help="Captum NeuronConductance neurons timed per round (default 3; 1 quick)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--memory-batch", type=int, default=None,
                   help="examples for the memory measurement (default 128; 32 quick)")
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--fail-on-miss", action="store_true")
    p.add_argument("--memory-child", metavar="SETTING", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    defaults = {"batch": (32, 8), "repeats": (7, 2), "nc_repeats": (3, 1),
                "captum_neurons": (3, 1), "memory_batch": (128, 32)}
    for key, (full, quick) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    if min(args.batch, args.repeats, args.nc_repeats, args.captum_neurons, args.n_steps,
           args.memory_batch, args.threads) < 1:
        p.error("counts must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args.model, args.memory_batch, args.seed, args.n_steps,
                     args.layer)
        return 0
    t_start = time.perf_counter()
    info = machine_info(args.threads)
    print_machine(info)

    model, x, description = load_case(args.model, args.batch, args.seed)
    layer_mod = dict(model.named_modules())[args.layer]
    zero = torch.zeros_like(x[:1])
    with torch.no_grad():
        target = model(x).argmax(dim=1)
    change = output_change(model, x, target)
    M = args.n_steps
    print(f"case: {description}; layer {args.layer!r} ({type(layer_mod).__name__}); zero "
          f"baseline; target = predicted class; mean |F(x) − F(x′)| = "
          f"{float(change.abs().mean()):.3f}{' [--quick]' if args.quick else ''}")

    # ---- accuracy: completeness error against n_steps
    grid = sorted({m for m in STEP_GRID if m <= M} | {M})
    cap_err, errs, (agree_diff, agree_ref) = error_curves(
        model, layer_mod, args.layer, x, target, change, M, grid)
    print(f"\nagreement: our left rule vs Captum LayerConductance(riemann_trapezoid), both "
          f"n_steps={M}: max|diff| {agree_diff:.3g} (max|attr| {agree_ref:.3g}, relative "
          f"{agree_diff / max(agree_ref, 1e-30):.2g})")
    print("completeness error (mean |δ| / mean |ΔF|) by n_steps:")
    print(f"  {'n_steps':>8}" + "".join(f"{r:>15}" for r in errs))
    for m in grid:
        print(f"  {m:>8}" + "".join(f"{errs[r][m]:>15.3g}" for r in errs))
    print(f"  Captum LayerConductance(riemann_trapezoid) at n_steps={M}: {cap_err:.3g}")
    m_trap = steps_for(errs["trapezoid"], cap_err)
    m_gl = steps_for(errs["gausslegendre"], cap_err)
    if m_trap is None:
        m_trap = M
        print(f"  our trapezoid never reaches Captum's error below n_steps={M}; using {M}")
    print(f"  equal accuracy: our trapezoid needs n_steps={m_trap} "
          f"(error {errs['trapezoid'][m_trap]:.3g}); Gauss–Legendre n_steps="
          f"{m_gl if m_gl is not None else 'n/a'}")

    # ---- timing: layer methods
    tc = TotalConductance(model, args.layer)
    ig = IntegratedGradients(model)
    cap_lc = CaptumLayerConductance(model, layer_mod)

    def ours_tc(m, rule):
        return lambda: tc.attribute(x, baselines=zero, target=target, n_steps=m, method=rule,
                                    completeness_tol=None)

    layer_group = [
        Candidate("captum_layer_conductance", lambda: cap_lc.attribute(
            x, baselines=zero, target=target, n_steps=M, method="riemann_trapezoid"),
            f"riemann_trapezoid, n_steps={M}"),
        Candidate("ours_tc_equal_accuracy", ours_tc(m_trap, "trapezoid"),
                  f"trapezoid, n_steps={m_trap}"),
        Candidate("ours_tc_trapezoid", ours_tc(M, "trapezoid"), f"trapezoid, n_steps={M}"),
        Candidate("ours_tc_left", ours_tc(M, "left"), f"left, n_steps={M}"),
        Candidate("ours_ig_inputs", lambda: ig.attribute(
            x, baselines=zero, target=target, n_steps=M, method="riemann_trapezoid",
            completeness_tol=None), f"IntegratedGradients riemann_trapezoid, n_steps={M}"),
    ]
    # every ReLU layer at once against one call per layer (ours and Captum's)
    relus = [n for n, mod in model.named_modules() if isinstance(mod, nn.ReLU)]
    ltc = LayersTotalConductance(model, relus)
    per_layer = [TotalConductance(model, n) for n in relus]
    cap_per_layer = [CaptumLayerConductance(model, dict(model.named_modules())[n])
                     for n in relus]

    def ours_all_layers():
        return ltc.attribute(x, baselines=zero, target=target, n_steps=M, method="left",
                             completeness_tol=None)

    def ours_each_layer():
        return [t.attribute(x, baselines=zero, target=target, n_steps=M, method="left",
                            completeness_tol=None) for t in per_layer]

    same = all(torch.equal(a, b) for a, b in zip(ours_all_layers(), ours_each_layer()))
    print(f"every ReLU layer {relus}: LayersTotalConductance equals one TotalConductance per "
          f"layer: {same}")
    if not same:
        raise SystemExit("LayersTotalConductance disagrees with TotalConductance per layer")
    layer_group += [
        Candidate("ours_ltc_all_relus", ours_all_layers,
                  f"{len(relus)} layers, one call, left, n_steps={M}"),
        Candidate("ours_tc_each_relu", ours_each_layer,
                  f"{len(relus)} layers, one call each, left, n_steps={M}"),
        Candidate("captum_lc_each_relu", lambda: [c.attribute(
            x, baselines=zero, target=target, n_steps=M, method="riemann_trapezoid")
            for c in cap_per_layer], f"{len(relus)} layers, one call each, n_steps={M}"),
    ]
    if m_gl is not None:
        layer_group.append(Candidate("ours_tc_gl_equal_accuracy", ours_tc(m_gl, "gausslegendre"),
                                     f"gausslegendre, n_steps={m_gl} (info)"))
    busy_now = busy_fraction()
    print(f"\ntiming layer methods ({args.repeats} rounds; other load now: "
          f"{'?' if busy_now is None else f'{busy_now:.0%}'} busy) ...", flush=True)
    times, cpu = time_interleaved([tuple(layer_group)], args.repeats, args.warmup)

    # ---- neuron conductance
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tc_full = tc.attribute(x, baselines=zero, target=target, n_steps=M, completeness_tol=None)
    per_ex = tuple(tc_full.shape[1:])
    top = tc_full.abs().mean(dim=0).reshape(-1).argsort(descending=True)[:N_NEURONS]
    neurons = [tuple(int(i) for i in torch.unravel_index(t, per_ex)) for t in top]
    nc = NeuronConductance(model, args.layer)
    cap_nc = CaptumNeuronConductance(model, layer_mod)
    c_neurons = neurons[: args.captum_neurons]

    def ours_nc():
        return nc.attribute(x, neuron_selector=neurons, baselines=zero, target=target,
                            n_steps=M, method="gausslegendre")

    def captum_nc():
        return [cap_nc.attribute(x, neuron_selector=n, baselines=zero, target=target,
                                 n_steps=M, method="gausslegendre") for n in c_neurons]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours_out = ours_nc()
        cap_out = captum_nc()
    # ours: (32, *input.shape) in selector order; Captum: one input-shaped tensor per neuron
    nc_diff = max(float((ours_out[i] - c).abs().max()) for i, c in enumerate(cap_out))
    nc_ref = max(float(c.abs().max()) for c in cap_out)
    print(f"\nNeuronConductance, {N_NEURONS} neurons (top mean |TC|), gausslegendre "
          f"n_steps={M}; agreement with Captum on the {len(c_neurons)} timed neuron(s): "
          f"max|diff| {nc_diff:.3g} (max|attr| {nc_ref:.3g})")
    print(f"timing neuron conductance ({args.nc_repeats} rounds) ...", flush=True)
    nc_times, nc_cpu = time_interleaved(
        [(Candidate("ours_nc_32", ours_nc, f"{N_NEURONS} neurons, one call"),
          Candidate(f"captum_nc_{len(c_neurons)}", captum_nc,
                    f"{len(c_neurons)} neuron(s), one call each"))],
        args.nc_repeats, 0)
    scale = N_NEURONS / len(c_neurons)
    cap_name = f"captum_nc_{len(c_neurons)}"
    times["ours_nc_32"] = nc_times["ours_nc_32"]
    times["captum_nc_32_extrapolated"] = [t * scale for t in nc_times[cap_name]]
    cpu["ours_nc_32"] = nc_cpu["ours_nc_32"]
    cpu["captum_nc_32_extrapolated"] = [t * scale for t in nc_cpu[cap_name]]

    # ---- table
    notes = {c.name: c.info for c in layer_group}
    notes["ours_nc_32"] = f"{N_NEURONS} neurons, one call"
    notes["captum_nc_32_extrapolated"] = (f"{len(c_neurons)} neuron(s) timed, x{scale:g} "
                                          "(extrapolated)")
    print(f"\n  {'candidate (wall time per call)':<30}{'median ms':>11}{'IQR ms':>23}"
          f"{'min ms':>11}{'CPU ms':>11}{'n':>4}  note")
    stats = {}
    for name, v in times.items():
        q1, med, q3 = quartiles(v)
        stats[name] = {"median_s": med, "q1_s": q1, "q3_s": q3, "min_s": min(v),
                       "cpu_median_s": statistics.median(cpu[name]), "n": len(v),
                       "times_s": v, "note": notes.get(name, "")}
        print(f"  {name:<30}{med * 1e3:>11.1f}{f'{q1 * 1e3:.1f} – {q3 * 1e3:.1f}':>23}"
              f"{min(v) * 1e3:>11.1f}{statistics.median(cpu[name]) * 1e3:>11.1f}{len(v):>4}"
              f"  {notes.get(name, '')}")

    ratios_spec = [
        (f"captum LC (m={M}) / ours TC at equal accuracy (m={m_trap})",
         "captum_layer_conductance", "ours_tc_equal_accuracy", ">=", 1.5),
        (f"captum LC / ours TC trapezoid, same n_steps={M}",
         "captum_layer_conductance", "ours_tc_trapezoid", ">=", 1.0),
        (f"captum LC / ours TC left, same n_steps={M} (identical computation)",
         "captum_layer_conductance", "ours_tc_left", None, None),
        (f"ours TC trapezoid / ours IG of the inputs, n_steps={M}",
         "ours_tc_trapezoid", "ours_ig_inputs", "<=", 1.2),
        ("ours TC once per ReLU layer / ours LayersTotalConductance of all",
         "ours_tc_each_relu", "ours_ltc_all_relus", ">=", 1.5),
        ("captum LC once per ReLU layer / ours LayersTotalConductance of all",
         "captum_lc_each_relu", "ours_ltc_all_relus", ">=", 2.0),
        (f"captum NC x{N_NEURONS} (extrapolated) / ours NC {N_NEURONS} neurons",
         "captum_nc_32_extrapolated", "ours_nc_32", ">=", 10.0),
    ]
    if m_gl is not None:
        ratios_spec.append((f"captum LC / ours TC Gauss–Legendre at equal accuracy (m={m_gl})",
                            "captum_layer_conductance", "ours_tc_gl_equal_accuracy", None, None))
    print("\n  ratios (of medians; [IQR of the per-round paired ratios]):")
    ratios = {}
    failed = False
    for label, num, den, kind, goal in ratios_spec:
        rs = ratio_stats(times, num, den)
        v = verdict(rs, kind, goal)
        rs["goal"] = None if kind is None else f"{kind} {goal:g}"
        rs["pass"] = None if kind is None else ": PASS" in v
        failed |= rs["pass"] is False
        ratios[label] = rs
        print(f"  {label:<66}{rs['ratio']:>7.2f}  [{rs['paired_q1']:.2f} – "
              f"{rs['paired_q3']:.2f}]  {v}")

    memory = []
    if not args.skip_memory:
        memory = measure_memory(args, args.memory_batch * (M + 1))

    elapsed = time.perf_counter() - t_start
    busy_end = busy_fraction()
    print(f"\ntotal benchmark time {elapsed:.1f} s; other load at the end: "
          f"{'?' if busy_end is None else f'{busy_end:.0%}'} of the CPUs busy, 1-min load "
          f"average {_loadavg()}")
    if args.json:
        results = {
            "machine": info, "settings": {k: v for k, v in vars(args).items()},
            "case": description, "layer": args.layer,
            "completeness": {"captum_riemann_trapezoid_at_M": cap_err,
                             "ours": {r: {str(m): e for m, e in d.items()} for r, d in errs.items()},
                             "equal_accuracy_steps": {"trapezoid": m_trap, "gausslegendre": m_gl}},
            "agreement_left_vs_captum": {"max_abs_diff": agree_diff, "max_abs_attr": agree_ref},
            "agreement_nc_vs_captum": {"max_abs_diff": nc_diff, "max_abs_attr": nc_ref},
            "neurons": [list(n) for n in neurons], "timings": stats, "ratios": ratios,
            "memory": memory, "elapsed_s": elapsed, "busy_end": busy_end,
        }
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
        print(f"wrote {args.json}")
    return 1 if (failed and args.fail_on_miss) else 0


if __name__ == "__main__":
    sys.exit(main())
