"""The DeepLIFT paper's genomics simulation (Shrikumar et al. 2017, Figs. 5–6).

The experiment behind ``neuron-importance reproduce deeplift-genomics`` (protocol:
``docs/methods/deeplift.md`` §8 and §10; what is written: ``docs/deeplift-genomics.md``):

1. load the authors' 8000 simulated sequences (:mod:`neuron_importance.data.genomics_sim`),
   their 800 test ids, and carve a seeded validation split from the rest;
2. train the paper's model (``genomics_cnn``: conv 50×11, ReLU, conv 50×11, ReLU, global
   average pool, dense 50, ReLU, dropout, dense 3; multi-task sigmoid = BCE on the logits)
   on the train split, keeping the epoch with the lowest validation loss; the weights are
   cached (safetensors) by a hash of the training configuration; report auROC per task on
   the test split;
3. score the test sequences for the logits of tasks 0–2 against the reference
   (0.3, 0.2, 0.2, 0.3) at every position with GBP×Δinput, grad×Δinput, IG-10 (midpoint
   rule), DeepLIFT Rescale, RevealCancel, genomics_default (fc-RC-conv-RS) and genomics_default
   averaged over ``n_refs`` dinucleotide shuffles of each sequence (DeepLiftShap with
   ``(N, R, 4, L)`` references); per-position score = the sum over the four channels; the
   multi-reference method's hypothetical contributions are computed from the per-reference
   multipliers and saved;
4. scan every test sequence with the GATA_disc1 and TAL1_known1 PWMs, take the authors'
   greedy top-5 hits (with their exclusion-slice quirk) and compute the false-negative rate
   of Fig. 5b, an auPRC of motif-position recovery and the qualitative checks of §4.2.

:func:`run_experiment` takes any model and :class:`~neuron_importance.data.genomics_sim.
GenomicsSim` splits (the tests use a tiny one); :func:`reproduce` loads the data, trains (or
loads) the model and calls it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from neuron_importance.data.genomics_sim import CLASS_NAMES, TASK_NAMES, GenomicsSim
from neuron_importance.genomics.pwm import BACKGROUND, PWMS, scan, top_hits

__all__ = [
    "METHODS",
    "PAPER_FNR",
    "Settings",
    "headline",
    "reproduce",
    "run_experiment",
    "train_genomics_model",
    "window_sums",
]

#: method key -> label (in the paper's column order)
METHODS: dict[str, str] = {
    "gbp_x_dinput": "GBP×Δinput",
    "grad_x_dinput": "grad×Δinput",
    "ig10": "IG-10 (midpoint)",
    "rescale": "DeepLIFT Rescale",
    "revealcancel": "DeepLIFT RevealCancel",
    "genomics_default": "DeepLIFT fc-RC-conv-RS",
    "genomics_default_multiref": "fc-RC-conv-RS, dinuc-shuffled refs",
}

#: the paper's false-negative rates (test split; authors' 2017 notebook, §10 "Goal numbers")
PAPER_FNR: dict[str, dict[str, float]] = {
    "gbp_x_dinput": {"TAL1": 0.0, "GATA": 0.0},
    "grad_x_dinput": {"TAL1": 0.1156, "GATA": 0.0383},
    "ig10": {"TAL1": 0.0804, "GATA": 0.0639},
    "rescale": {"TAL1": 0.0704, "GATA": 0.0447},
    "revealcancel": {"TAL1": 0.0, "GATA": 0.0},
    "genomics_default": {"TAL1": 0.0, "GATA": 0.0},
    "genomics_default_multiref": {"TAL1": 0.0, "GATA": 0.0},
}

#: the notebook's example sequences: (test index, task)
EXAMPLES = ((731, 0), (197, 1))
#: methods drawn as logos for each example (the notebook: grad×inp, IG and Rescale fail on 731
#: task 0; GBP fires non-specifically on 197 task 1)
LOGO_METHODS = (
    ("grad_x_dinput", "ig10", "rescale", "revealcancel", "genomics_default",
     "genomics_default_multiref"),
    ("gbp_x_dinput", "grad_x_dinput", "genomics_default", "genomics_default_multiref"),
)


@dataclass
class Settings:
    """What the experiment computes (recorded under ``config`` in ``results.json``)."""

    epochs: int = 40  # at most; the epoch with the lowest validation loss is kept
    patience: int = 5  # stop after this many epochs without a better validation loss
    batch_size: int = 64
    lr: float = 3e-3
    n_train: int | None = None  # first n training rows (None: all)
    n_test: int | None = None  # test sequences scored (None: all 800)
    n_refs: int = 10  # dinucleotide shuffles per sequence for the multi-reference method
    ig_steps: int = 10
    top_n: int = 5  # top PWM hits per sequence and motif
    strong: float = 7.0  # log-odds threshold of a strong hit (false-negative rate)
    score_batch: int = 100  # sequences per attribution call
    val_fraction: float = 0.1
    seed: int = 0  # validation split, initial weights, training order, shuffles, subsets

    @classmethod
    def full(cls, seed: int = 0) -> Settings:
        return cls(seed=seed)

    @classmethod
    def quick(cls, seed: int = 0) -> Settings:
        return cls(epochs=8, n_test=120, n_refs=5, seed=seed)

    def check(self) -> None:
        for name in ("epochs", "batch_size", "n_refs", "ig_steps", "top_n", "score_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be positive or None, got {v}")


# ----------------------------------------------------------------------------- training


def train_genomics_model(
    model: nn.Module, train: GenomicsSim, val: GenomicsSim | None, settings: Settings,
    progress: bool = True, log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Adam + binary cross-entropy on the logits (multi-task sigmoid); keeps the best epoch by
    validation loss (early stopping with ``settings.patience``). Returns a training summary."""
    from tqdm.auto import tqdm

    say = log or (lambda _m: None)
    x, y = train.onehot, train.labels
    n = len(x)
    gen = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    best_loss, best_state, best_epoch, history = float("inf"), None, 0, []
    steps = (n + settings.batch_size - 1) // settings.batch_size
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        bar = tqdm(total=settings.epochs * steps, desc="training", unit="batch",
                   disable=not progress, leave=False)
        try:
            for epoch in range(settings.epochs):
                model.train()
                order = torch.randperm(n, generator=gen)
                total = 0.0
                for s in range(0, n, settings.batch_size):
                    idx = order[s : s + settings.batch_size]
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model(x[idx]), y[idx])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    bar.update(1)
                    bar.set_postfix(epoch=f"{epoch + 1}/{settings.epochs}",
                                    loss=f"{total / min(n, s + len(idx)):.3f}", refresh=False)
                model.eval()
                train_loss = total / n
                if val is not None and len(val):
                    with torch.no_grad():
                        val_loss = float(loss_fn(_logits(model, val.onehot), val.labels))
                else:
                    val_loss = train_loss
                history.append({"epoch": epoch + 1, "train_loss": round(train_loss, 5),
                                "val_loss": round(val_loss, 5)})
                say(f"  epoch {epoch + 1}: train loss {train_loss:.4f}, validation loss "
                    f"{val_loss:.4f}")
                if val_loss < best_loss:
                    best_loss, best_epoch = val_loss, epoch + 1
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                elif epoch + 1 - best_epoch >= settings.patience:
                    break
        finally:
            bar.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"best_epoch": best_epoch, "best_val_loss": round(best_loss, 5), "history": history}


@torch.no_grad()
def _logits(model: nn.Module, x: Tensor, batch: int = 500) -> Tensor:
    model.eval()
    return torch.cat([model(x[s : s + batch]) for s in range(0, len(x), batch)])


def _auroc(labels: np.ndarray, scores: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import roc_auc_score

    out: dict[str, float | None] = {}
    for t, name in enumerate(TASK_NAMES):
        y = labels[:, t]
        out[name] = (round(float(roc_auc_score(y, scores[:, t])), 4)
                     if 0 < y.sum() < len(y) else None)
    return out


# ----------------------------------------------------------------------------- scoring


def _reference(length: int) -> Tensor:
    return torch.tensor(BACKGROUND, dtype=torch.float32).view(1, 4, 1).expand(1, 4, length)


def _score_fns(model: nn.Module, settings: Settings) -> dict[str, Callable[..., Tensor]]:
    """method -> f(x (B,4,L), refs (B,R,4,L), task) -> ((B,4,L) contributions, delta or None)."""
    import neuron_importance as ni
    from neuron_importance.attribution.gradient import compute_gradients

    gbp = ni.GuidedBackprop(model)
    ig = ni.IntegratedGradients(model)
    dls = {r: ni.DeepLift(model, rule=r, completeness_tol=float("inf"))
           for r in ("rescale", "reveal_cancel", "genomics_default")}
    shap = ni.DeepLiftShap(model, rule="genomics_default", completeness_tol=float("inf"))

    def grad_x(x, _refs, t):
        ref = _reference(x.shape[-1])
        (g,), _ = compute_gradients(model, (x.clone(),), (), target=t)
        return g * (x - ref), None

    def gbp_x(x, _refs, t):
        ref = _reference(x.shape[-1])
        return gbp.attribute(x.clone(), target=t) * (x - ref), None

    def ig10(x, _refs, t):
        ref = _reference(x.shape[-1])
        a, d = ig.attribute(x, baselines=ref, target=t, n_steps=settings.ig_steps,
                            method="riemann_middle", return_convergence_delta=True,
                            completeness_tol=None)
        return a, d

    def deeplift(rule):
        def f(x, _refs, t):
            return dls[rule].attribute(x, baselines=_reference(x.shape[-1]), target=t,
                                       return_convergence_delta=True)
        return f

    def multiref(x, refs, t):
        return shap.attribute(x, baselines=refs, target=t, return_convergence_delta=True)

    return {
        "gbp_x_dinput": gbp_x,
        "grad_x_dinput": grad_x,
        "ig10": ig10,
        "rescale": deeplift("rescale"),
        "revealcancel": deeplift("reveal_cancel"),
        "genomics_default": deeplift("genomics_default"),
        "genomics_default_multiref": multiref,
    }


def _hypothetical(model: nn.Module, x: Tensor, refs: Tensor, task: int) -> Tensor:
    """Hypothetical contributions ``(B, 4, L)`` of genomics_default over the references."""
    import neuron_importance as ni
    from neuron_importance.genomics.hypothetical import hypothetical_contributions

    dl = ni.DeepLift(model, rule="genomics_default", completeness_tol=float("inf"))
    mults = torch.stack(
        [dl.multipliers(x, baselines=refs[:, r], target=task) for r in range(refs.shape[1])],
        dim=1,
    )
    return hypothetical_contributions(mults, refs)


# ----------------------------------------------------------------------------- evaluation


def window_sums(scores: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """Sum of ``scores[n, start : start + width]`` for every ``starts[n, k]`` -> like
    ``starts``. ``scores`` is ``(N, L)``."""
    c = np.concatenate([np.zeros((scores.shape[0], 1)), np.cumsum(scores, axis=1)], axis=1)
    rows = np.arange(scores.shape[0])[:, None]
    return c[rows, starts + width] - c[rows, starts]


def _auprc(scores: np.ndarray, mask: np.ndarray) -> tuple[float | None, float | None]:
    """(pooled, mean per sequence) average precision of ``scores`` for ``mask`` (rows with at
    least one positive)."""
    from sklearn.metrics import average_precision_score

    keep = mask.any(axis=1)
    if not keep.any():
        return None, None
    s, m = scores[keep], mask[keep]
    pooled = float(average_precision_score(m.ravel(), s.ravel()))
    per = float(np.mean([average_precision_score(mi, si) for si, mi in zip(s, m)]))
    return round(pooled, 4), round(per, 4)


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr

    r = spearmanr(a, b).statistic
    return None if not np.isfinite(r) else round(float(r), 4)


def _evaluate(
    scores: dict[str, np.ndarray], test: GenomicsSim, settings: Settings
) -> dict[str, Any]:
    """FNR, auPRC and the qualitative checks from the projected scores ``(N, 3, L)``."""
    classes = test.classes.numpy()
    both = classes == CLASS_NAMES.index("gata_tal1")
    hits: dict[str, dict[str, np.ndarray]] = {}
    for motif, pwm in PWMS.items():
        lo = scan(test.onehot, pwm.log_odds())
        vals, idx = top_hits(lo, settings.top_n, width=pwm.width, quirk=True)
        dvals, didx = top_hits(lo, settings.top_n, width=pwm.width, quirk=False)
        # the dedup variant: quirk off, and drop repeats (none remain without the quirk)
        hits[motif] = {"log_odds": vals, "start": idx, "dedup_log_odds": dvals,
                       "dedup_start": didx}
    fnr: dict[str, dict[str, float | None]] = {}
    fnr_dedup: dict[str, dict[str, float | None]] = {}
    n_hits: dict[str, int] = {}
    n_hits_dedup: dict[str, int] = {}
    repeats: dict[str, int] = {}
    auprc: dict[str, dict[str, float | None]] = {}
    auprc_per_seq: dict[str, dict[str, float | None]] = {}
    qual: dict[str, Any] = {}
    masks = {"both": test.motif_mask(), "GATA": test.motif_mask("GATA"),
             "TAL1": test.motif_mask("TAL1")}
    has = {"both": both, "GATA": test.labels[:, 1].numpy() > 0,
           "TAL1": test.labels[:, 2].numpy() > 0}
    for motif, h in hits.items():
        strong = (h["log_odds"] >= settings.strong) & both[:, None]
        n_hits[motif] = int(strong.sum())
        dstrong = (h["dedup_log_odds"] >= settings.strong) & both[:, None]
        n_hits_dedup[motif] = int(dstrong.sum())
        # hits picked more than once per sequence because of the exclusion-slice quirk
        repeats[motif] = int(sum(len(r) - len(set(r.tolist())) for r in h["start"]))
    for m, sc in scores.items():
        fnr[m], fnr_dedup[m], auprc[m], auprc_per_seq[m] = {}, {}, {}, {}
        q: dict[str, Any] = {"mean_strong_hit_score": {}, "spearman_log_odds": {}}
        for motif, pwm in PWMS.items():
            h = hits[motif]
            strong = (h["log_odds"] >= settings.strong) & both[:, None]
            win0 = window_sums(sc[:, 0], h["start"], pwm.width)
            fnr[m][motif] = (round(float((win0[strong] <= 0).mean()), 4)
                             if strong.any() else None)
            dstrong = (h["dedup_log_odds"] >= settings.strong) & both[:, None]
            dwin0 = window_sums(sc[:, 0], h["dedup_start"], pwm.width)
            fnr_dedup[m][motif] = (round(float((dwin0[dstrong] <= 0).mean()), 4)
                                   if dstrong.any() else None)
            # qualitative: mean window score of strong hits per task, in both-motif
            # sequences and in the single-motif class of this motif
            single = classes == CLASS_NAMES.index(f"{motif.lower()}_only")
            pos = h["dedup_log_odds"] > 0
            q["mean_strong_hit_score"][motif] = {}
            q["spearman_log_odds"][motif] = {}
            for t, tname in enumerate(TASK_NAMES):
                w = window_sums(sc[:, t], h["dedup_start"], pwm.width)
                st = h["dedup_log_odds"] >= settings.strong
                q["mean_strong_hit_score"][motif][tname] = {
                    "gata_tal1": _mean(w[st & both[:, None]]),
                    f"{motif.lower()}_only": _mean(w[st & single[:, None]]),
                }
                q["spearman_log_odds"][motif][tname] = _spearman(
                    h["dedup_log_odds"][pos], w[pos])
        for t, tname in enumerate(TASK_NAMES):
            rows = has[tname]
            auprc[m][tname], auprc_per_seq[m][tname] = _auprc(sc[rows, t], masks[tname][rows])
        qual[m] = q
    checks = _qualitative_checks(qual)
    return {
        "false_negative_rate": fnr,
        "false_negative_rate_dedup": fnr_dedup,
        "n_strong_hits": n_hits,
        "n_strong_hits_dedup": n_hits_dedup,
        "repeated_picks": repeats,
        "auprc": auprc,
        "auprc_per_sequence": auprc_per_seq,
        "qualitative": qual,
        "qualitative_checks": checks,
        "_hits": hits,
    }


def _mean(v: np.ndarray) -> float | None:
    return round(float(v.mean()), 4) if v.size else None


def _qualitative_checks(qual: Mapping[str, Any]) -> dict[str, dict[str, bool | None]]:
    """The paper's §4.2 checks, as booleans per method:

    * ``tal1_task2_high``: strong TAL1 hits in both-motif sequences score > 0 on task 2 (mean);
    * ``tal1_task1_low``: their mean task-1 score is below a tenth of the task-2 mean (our
      threshold);
    * ``rises_with_log_odds``: Spearman(log-odds, window score) > 0.3 for TAL1/task 2 and
      GATA/task 1 (hits with log-odds > 0);
    * ``both_high_task0``: both motifs' strong hits score > 0 on task 0 (mean);
    * ``both_above_single_task0``: on task 0, hits in both-motif sequences score higher than
      hits of the same motif in single-motif sequences (both motifs).
    """
    out: dict[str, dict[str, bool | None]] = {}
    for m, q in qual.items():
        ms, sp = q["mean_strong_hit_score"], q["spearman_log_odds"]

        def g(motif, task, cls="gata_tal1", ms=ms):
            return ms[motif][task][cls]

        def ok(*vals):
            return None if any(v is None for v in vals) else True

        t2, t1 = g("TAL1", "TAL1"), g("TAL1", "GATA")
        r1, r2 = sp["GATA"]["GATA"], sp["TAL1"]["TAL1"]
        b_g, b_t = g("GATA", "both"), g("TAL1", "both")
        s_g, s_t = g("GATA", "both", "gata_only"), g("TAL1", "both", "tal1_only")
        out[m] = {
            "tal1_task2_high": ok(t2) and t2 > 0,
            "tal1_task1_low": ok(t1, t2) and t1 < 0.1 * t2,
            "rises_with_log_odds": ok(r1, r2) and r1 > 0.3 and r2 > 0.3,
            "both_high_task0": ok(b_g, b_t) and b_g > 0 and b_t > 0,
            "both_above_single_task0": ok(b_g, b_t, s_g, s_t) and b_g > s_g and b_t > s_t,
        }
    return out


# ----------------------------------------------------------------------------- experiment


def _choose_test(test: GenomicsSim, n: int | None, seed: int) -> np.ndarray:
    """Test indices to score: all, or ``n`` spread over the classes (seeded) including the
    notebook's example indices when they exist."""
    total = len(test)
    if n is None or n >= total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    must = [i for i, _ in EXAMPLES if i < total][:n]
    classes = test.classes.numpy()
    pools = [list(rng.permutation(np.flatnonzero(classes == c))) for c in np.unique(classes)]
    chosen = list(must)
    depth = 0
    while len(chosen) < n:
        for p in pools:
            if depth < len(p) and len(chosen) < n and int(p[depth]) not in chosen:
                chosen.append(int(p[depth]))
        depth += 1
        if depth > total:
            break
    return np.sort(np.array(chosen, dtype=np.int64))


def run_experiment(
    model: nn.Module,
    test: GenomicsSim,
    out_dir: str | os.PathLike,
    *,
    settings: Settings | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Score ``test`` with every method, evaluate against the PWM hits, write the outputs.

    Args:
        model: a trained model returning ``(N, 3)`` task logits (put in eval mode).
        test: the test split (all of it is used for auROC; ``settings.n_test`` of it scored).
        out_dir: receives ``results.json``, ``report.md``, ``scatter_GATA.png``,
            ``scatter_TAL1.png``, ``logos/*.png``, ``scores.npz`` and ``hypothetical.npy``.
        info: extra entries for ``config`` (training summary, data source, ...).

    Returns:
        the ``results.json`` dictionary; keys documented in ``docs/deeplift-genomics.md``.
    """
    from tqdm.auto import tqdm

    from neuron_importance.experiments.machine import machine_info
    from neuron_importance.genomics.shuffle import dinuc_shuffle_references

    settings = settings or Settings.full()
    settings.check()
    say = log or (lambda _m: None)
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    machine = machine_info()

    logits = _logits(model, test.onehot).numpy()
    auroc = _auroc(test.labels.numpy(), logits)
    say("test auROC: " + ", ".join(f"task {t} ({n}) {auroc[n]}" for t, n in enumerate(TASK_NAMES)))

    chosen = _choose_test(test, settings.n_test, settings.seed)
    sub = test.subset(chosen)
    x = sub.onehot.contiguous()
    refs = dinuc_shuffle_references(x, settings.n_refs, seed=settings.seed)
    fns = _score_fns(model, settings)
    n, _, length = x.shape
    scores = {m: np.zeros((n, 3, length), dtype=np.float32) for m in METHODS}
    deltas = {m: 0.0 for m in METHODS}
    seconds = {m: 0.0 for m in METHODS}
    hyp = np.zeros((n, 3, 4, length), dtype=np.float32)
    hyp_seconds = 0.0
    hyp_check = 0.0
    batches = list(range(0, n, settings.score_batch))
    bar = tqdm(total=len(batches) * 3 * (len(METHODS) + 1), desc="scoring", unit="call",
               disable=not progress, leave=False)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for s in batches:
                xb, rb = x[s : s + settings.score_batch], refs[s : s + settings.score_batch]
                for t in range(3):
                    for m, fn in fns.items():
                        bar.set_postfix(method=m, task=t, refresh=False)
                        t0 = time.perf_counter()
                        contrib, delta = fn(xb, rb, t)
                        seconds[m] += time.perf_counter() - t0
                        proj = contrib.detach().sum(dim=1)  # Σ over A, C, G, T
                        scores[m][s : s + len(xb), t] = proj.numpy()
                        if delta is not None:
                            deltas[m] = max(deltas[m], float(delta.abs().max()))
                        bar.update(1)
                    t0 = time.perf_counter()
                    h = _hypothetical(model, xb, rb, t)
                    hyp_seconds += time.perf_counter() - t0
                    hyp[s : s + len(xb), t] = h.numpy()
                    # the hypothetical score of the observed base = the multi-ref score
                    on_seq = (h * xb).sum(dim=1).numpy()
                    hyp_check = max(hyp_check, float(np.abs(
                        on_seq - scores["genomics_default_multiref"][s : s + len(xb), t]).max()))
                    bar.update(1)
    finally:
        bar.close()

    ev = _evaluate(scores, sub, settings)
    hits = ev.pop("_hits")
    np.savez_compressed(out / "scores.npz", test_index=chosen, names=np.array(sub.names),
                        **scores)
    np.save(out / "hypothetical.npy", hyp)
    files = ["results.json", "report.md", "scores.npz", "hypothetical.npy"]
    files += _plot_scatter(scores, sub, hits, out)
    files += _plot_logos(scores, hyp, sub, chosen, out)

    res: dict[str, Any] = {
        "auroc": auroc,
        "false_negative_rate": ev["false_negative_rate"],
        "paper_false_negative_rate": PAPER_FNR,
        "false_negative_rate_dedup": ev["false_negative_rate_dedup"],
        "n_strong_hits": ev["n_strong_hits"],
        "n_strong_hits_dedup": ev["n_strong_hits_dedup"],
        "repeated_picks": ev["repeated_picks"],
        "auprc": ev["auprc"],
        "auprc_per_sequence": ev["auprc_per_sequence"],
        "qualitative": ev["qualitative"],
        "qualitative_checks": ev["qualitative_checks"],
        "completeness_max_abs": {m: (round(deltas[m], 6) if m not in
                                     ("gbp_x_dinput", "grad_x_dinput") else None)
                                 for m in METHODS},
        "hypothetical_check_max_abs": round(hyp_check, 7),
        "seconds": {**{m: round(v, 2) for m, v in seconds.items()},
                    "hypothetical": round(hyp_seconds, 2)},
        "methods": METHODS,
        "tasks": list(TASK_NAMES),
        "motifs": list(PWMS),
        "n_scored": int(n),
        "test_index": chosen.tolist() if n < len(test) else "all",
        "config": {**asdict(settings), **dict(info or {})},
        "machine": machine,
        "files": files,
    }
    res["experiment_seconds"] = round(time.perf_counter() - t_start, 2)
    (out / "report.md").write_text(_report(res), encoding="utf-8")
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return res


# ----------------------------------------------------------------------------- figures


def _figure(w: float, h: float, layout: str | None = "constrained"):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout=layout)
    FigureCanvasAgg(fig)
    return fig


_CLASS_COLOURS = {"gata_tal1": "#7b3294", "gata_only": "#1b9e77", "tal1_only": "#d95f02",
                  "empty": "#999999"}


def _plot_scatter(scores, test: GenomicsSim, hits, out: Path) -> list[str]:
    """Fig. 5-style: per motif, window score vs PWM log-odds (top hits, log-odds > 0), rows =
    methods, columns = tasks; colour = sequence class."""
    files = []
    classes = test.classes.numpy()
    for motif, pwm in PWMS.items():
        h = hits[motif]
        lo, st = h["log_odds"], h["start"]
        keep = lo > 0
        # a fixed grid: constrained layout on 21 panels costs seconds per figure
        fig = _figure(10, 2.0 * len(METHODS), layout=None)
        fig.subplots_adjust(left=0.1, right=0.98, bottom=0.04, top=0.95, hspace=0.3,
                            wspace=0.25)
        axes = fig.subplots(len(METHODS), 3, squeeze=False)
        for i, m in enumerate(METHODS):
            for t, tname in enumerate(TASK_NAMES):
                ax = axes[i][t]
                w = window_sums(scores[m][:, t], st, pwm.width)
                for c, cname in enumerate(CLASS_NAMES):
                    sel = keep & (classes[:, None] == c)
                    if sel.any():
                        ax.scatter(lo[sel], w[sel], s=4, alpha=0.5, lw=0,
                                   color=_CLASS_COLOURS[cname], label=cname)
                ax.axhline(0, color="0.5", lw=0.5)
                ax.axvline(7, color="0.7", lw=0.5, ls=":")
                if i == 0:
                    ax.set_title(f"task {t} ({tname})", fontsize=9)
                if t == 0:
                    ax.set_ylabel(METHODS[m], fontsize=7)
                if i == len(METHODS) - 1:
                    ax.set_xlabel(f"{pwm.name} log-odds", fontsize=8)
                ax.tick_params(labelsize=6)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="upper center", ncols=4, fontsize=8,
                       markerscale=3, frameon=False)
        name = f"scatter_{motif}.png"
        fig.savefig(out / name, dpi=90)
        files.append(name)
    return files


def _plot_logos(scores, hyp, test: GenomicsSim, chosen: np.ndarray, out: Path) -> list[str]:
    from neuron_importance.plots.dna import plot_contribution_logo

    files = []
    where = {int(c): i for i, c in enumerate(chosen)}
    # the notebook's examples with the methods its discussion names, plus the first scored
    # both-motif sequence with the multi-reference method (logomaker takes ~1 s per logo)
    plan: list[tuple[int, int, tuple[str, ...]]] = []
    for (test_idx, task), methods in zip(EXAMPLES, LOGO_METHODS):
        if test_idx in where:
            plan.append((test_idx, task, methods))
    for cname, task in (("gata_tal1", 0),):
        rows = np.flatnonzero(test.classes.numpy() == CLASS_NAMES.index(cname))
        if rows.size and int(chosen[rows[0]]) not in [p[0] for p in plan]:
            plan.append((int(chosen[rows[0]]), task, ("genomics_default_multiref",)))
    for test_idx, task, methods in plan:
        i = where[test_idx]
        x = test.onehot[i]
        spans = [(m.start, min(m.end, x.shape[-1])) for m in test.embeddings[i]]
        label = ", ".join(f"{m.short}@{m.start}" for m in test.embeddings[i]) or "no motif"
        for m in methods:
            c = x * torch.from_numpy(scores[m][i, task]).unsqueeze(0)
            name = f"logos/test{test_idx}_task{task}_{m}.png"
            plot_contribution_logo(c, out / name, highlight=spans,
                                   title=f"test {test_idx} ({test.names[i]}; {label}), task "
                                   f"{task} ({TASK_NAMES[task]}): {METHODS[m]}")
            files.append(name)
        name = f"logos/test{test_idx}_task{task}_hypothetical.png"
        plot_contribution_logo(torch.from_numpy(hyp[i, task]), out / name, highlight=spans,
                               title=f"test {test_idx}, task {task}: hypothetical "
                               "contributions (fc-RC-conv-RS, shuffled refs)")
        files.append(name)
    return files


# ----------------------------------------------------------------------------- report


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _report(res: Mapping[str, Any]) -> str:
    cfg = res["config"]
    lines = [
        "# DeepLIFT genomics simulation (paper Figs. 5–6)",
        "",
        f"Mode: {cfg.get('mode', 'custom')}. Model: {cfg.get('model', 'given')}; data: "
        f"{cfg.get('dataset', 'given')}. Scored {res['n_scored']} test sequences, targets = "
        "the logits of tasks 0–2, reference (0.3, 0.2, 0.2, 0.3) per position (the Δ of "
        "grad×Δinput and GBP×Δinput too), multi-reference method: "
        f"{cfg['n_refs']} dinucleotide shuffles per sequence.",
        "",
        "## Test auROC",
        "",
        "| task | auROC |",
        "|---|---|",
    ]
    for t, name in enumerate(res["tasks"]):
        lines.append(f"| {t} ({name}) | {res['auroc'][name]} |")
    lines += [
        "",
        "## False-negative rate (Fig. 5b): strong hits (log-odds ≥ "
        f"{cfg['strong']}) in both-motif sequences with task-0 window score ≤ 0",
        "",
        f"Strong hits (authors' top-{cfg['top_n']} with the exclusion quirk): "
        + ", ".join(f"{k} {v}" for k, v in res["n_strong_hits"].items())
        + "; without the quirk (no repeated picks): "
        + ", ".join(f"{k} {v}" for k, v in res["n_strong_hits_dedup"].items()) + ".",
        "",
        "| method | TAL1 ours | TAL1 paper | GATA ours | GATA paper | TAL1 dedup | GATA dedup |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, label in res["methods"].items():
        f, p, d = (res["false_negative_rate"][m], res["paper_false_negative_rate"][m],
                   res["false_negative_rate_dedup"][m])
        lines.append(f"| {label} | {_pct(f['TAL1'])} | {_pct(p['TAL1'])} | {_pct(f['GATA'])} "
                     f"| {_pct(p['GATA'])} | {_pct(d['TAL1'])} | {_pct(d['GATA'])} |")
    lines += [
        "",
        "## auPRC of motif-position recovery",
        "",
        "Per task, over the sequences positive for it, the per-position score ranks positions;"
        " positives are the positions inside an embedded instance (the `embeddings` column) of"
        " the task's motif(s) (task 0: both motifs, task 1: GATA, task 2: TAL1). Pooled over all"
        " positions (per-sequence mean in brackets).",
        "",
        "| method | task 0 (both) | task 1 (GATA) | task 2 (TAL1) |",
        "|---|---|---|---|",
    ]
    for m, label in res["methods"].items():
        a, b = res["auprc"][m], res["auprc_per_sequence"][m]
        lines.append(f"| {label} | " + " | ".join(f"{a[t]} ({b[t]})" for t in res["tasks"])
                     + " |")
    lines += [
        "",
        "## Qualitative checks (paper §4.2)",
        "",
        "| method | TAL1 high on task 2 | TAL1 low on task 1 | rises with log-odds | both high "
        "on task 0 | both-motif > single on task 0 |",
        "|---|---|---|---|---|---|",
    ]
    for m, label in res["methods"].items():
        c = res["qualitative_checks"][m]
        lines.append(f"| {label} | " + " | ".join(
            {True: "yes", False: "no", None: "n/a"}[c[k]] for k in (
                "tal1_task2_high", "tal1_task1_low", "rises_with_log_odds", "both_high_task0",
                "both_above_single_task0")) + " |")
    lines += [
        "",
        "Mean window score of strong TAL1 hits in both-motif sequences, per task (task 0 / 1 / 2):",
        "",
    ]
    for m, label in res["methods"].items():
        ms = res["qualitative"][m]["mean_strong_hit_score"]["TAL1"]
        lines.append(f"- {label}: " + " / ".join(str(ms[t]["gata_tal1"]) for t in res["tasks"]))
    lines += [
        "",
        "## Checks and timing",
        "",
        "Max |Σ contributions − Δlogit| (completeness): "
        + ", ".join(f"{m} {v}" for m, v in res["completeness_max_abs"].items() if v is not None)
        + f". Hypothetical scores on the observed base vs DeepLiftShap scores: max |diff| "
        f"{res['hypothetical_check_max_abs']}.",
        "",
        "Seconds per method (all scored sequences, 3 tasks): "
        + ", ".join(f"{m} {v}" for m, v in res["seconds"].items()) + ".",
        "",
        "Figures: `scatter_GATA.png`, `scatter_TAL1.png` (window score vs PWM log-odds, like "
        "Fig. 5a), `logos/` (contribution logos, embedded motifs shaded).",
        "",
    ]
    return "\n".join(lines)


def headline(res: Mapping[str, Any]) -> list[str]:
    lines = ["auROC: " + ", ".join(f"{k} {v}" for k, v in res["auroc"].items()),
             f"{'method':<28}{'FNR TAL1':>10}{'paper':>9}{'FNR GATA':>10}{'paper':>9}"]
    for m in res["methods"]:
        f, p = res["false_negative_rate"][m], res["paper_false_negative_rate"][m]
        lines.append(f"{m:<28}{_pct(f['TAL1']):>10}{_pct(p['TAL1']):>9}"
                     f"{_pct(f['GATA']):>10}{_pct(p['GATA']):>9}")
    return lines


# ----------------------------------------------------------------------------- reproduce


def reproduce(
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    epochs: int | None = None,
    n_test: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Load the data, train (or load the cached) model, run :func:`run_experiment`.

    Raises ``FileNotFoundError`` (with where it looked and how to point at the files) when the
    data are missing.
    """
    say = log or (lambda _m: None)
    t0 = time.perf_counter()
    settings = Settings.quick(seed) if quick else Settings.full(seed)
    if epochs is not None:
        settings.epochs = epochs
    if n_test is not None:
        settings.n_test = n_test
    settings.check()
    # denormal floats slow the CPU convolutions several-fold early in training (measured)
    torch.set_flush_denormal(True)
    try:
        mode = "quick" if quick else "full"
        if epochs is not None or n_test is not None:
            mode += f" (epochs {settings.epochs}, n_test {settings.n_test or 'all'})"
        return _reproduce(out_dir, settings, mode, data_dir, seed, cache_dir, progress, say, t0)
    finally:
        torch.set_flush_denormal(False)


def _train_config(settings: Settings, train_names: list[str], seed: int) -> dict[str, Any]:
    """Everything that changes the trained weights (the weight cache is keyed by its hash)."""
    ids_sha = hashlib.sha256("\n".join(train_names).encode()).hexdigest()[:16]
    return {"dataset": "deeplift-genomics", "train_ids_sha": ids_sha,
            "n_train": len(train_names), "epochs": settings.epochs,
            "patience": settings.patience, "batch_size": settings.batch_size,
            "lr": settings.lr, "seed": seed, "loss": "bce_logits",
            "val_fraction": settings.val_fraction}


def _reproduce(out_dir, settings: Settings, mode: str, data_dir, seed: int, cache_dir,
               progress: bool, say: Callable[[str], None], t0: float) -> dict[str, Any]:
    from neuron_importance.data.genomics_sim import (
        load_genomics_sim,
        load_test_ids,
        split_genomics_sim,
    )
    from neuron_importance.models import cache_path, cached_model

    data = load_genomics_sim(data_dir)
    split = split_genomics_sim(data, load_test_ids(data_dir), settings.val_fraction, seed)
    train_idx = split["train"]
    if settings.n_train is not None:
        rng = np.random.default_rng(seed)
        train_idx = np.sort(rng.permutation(train_idx)[: settings.n_train])
    train, val, test = (data.subset(train_idx), data.subset(split["validation"]),
                        data.subset(split["test"]))
    say(f"data: {len(data)} sequences from {data.source}; train {len(train)}, validation "
        f"{len(val)}, test {len(test)}")
    config = _train_config(settings, train.names, seed)
    cache = Path(cache_dir) if cache_dir else Path.cwd() / ".cache" / "neuron-importance"
    if mode.startswith("quick") and settings.n_train is None:
        full_config = _train_config(Settings.full(seed), train.names, seed)
        if cache_path("genomics_cnn", full_config, cache).exists():
            say("quick mode: using the cached fully trained model")
            config = full_config
    summary: dict[str, Any] = {}

    def train_fn(model: nn.Module) -> nn.Module:
        say(f"training genomics_cnn on {len(train)} sequences: up to {settings.epochs} "
            f"epoch(s), batch {settings.batch_size}, Adam lr {settings.lr}")
        t = time.perf_counter()
        summary.update(train_genomics_model(model, train, val, settings, progress, say))
        summary["seconds"] = round(time.perf_counter() - t, 2)
        return model

    model = cached_model("genomics_cnn", config, train_fn, cache, log=say)
    val_auroc = _auroc(val.labels.numpy(), _logits(model, val.onehot).numpy())
    info = {
        "mode": mode,
        "model": "genomics_cnn",
        "dataset": f"DeepLIFT genomics simulation ({data.source})",
        "training": config,
        "trained": (f"trained in {summary['seconds']:.1f} s" if summary
                    else "loaded from the weight cache"),
        "training_summary": summary or None,
        "validation_auroc": val_auroc,
        "n_train": len(train), "n_validation": len(val), "n_test": len(test),
        "test_indexing": "rows of the authors' test ids in the file order of "
                         "sequences.simdata.gz (0-based)",
    }
    res = run_experiment(model, test, out_dir, settings=settings, info=info,
                         progress=progress, log=say)
    res["command_seconds"] = round(time.perf_counter() - t0, 2)
    Path(out_dir, "results.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    report = Path(out_dir, "report.md")
    report.write_text(report.read_text(encoding="utf-8")
                      + f"Command time: {res['command_seconds']:.1f} s (data, model, "
                      f"experiment); model {info['trained']}.\n", encoding="utf-8")
    return res
