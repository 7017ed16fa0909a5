"""Which trunk layer's drift makes NAI-TC forget task 1 on Split Fashion-MNIST's worst order?

Order 4-2-1-3-0, 20 epochs per task, the study's protocol. Each run is checkpointed after every
task; the model after task 1 (third in the order) is kept. After the last task, each trunk
parameter tensor of the final model is put back, one at a time, to its value after task 1, and
task 1's test accuracy is measured (task 1's own head is not trained after its task): the gain
is how much of the forgetting that tensor's drift causes. Beside it: the drift's quadratic
cost under task 1's empirical Fisher (½ Σ F Δθ², F from 2,000 task-1 training images at the
model after task 1) and under NAI-TC's own importances after task 1 (Σ Ω Δθ², which the
penalty charges), and the share of the squared drift on the entries whose Ω is below its
median or 10th percentile. Runs: NAI-TC λ = 0.3 seeds 0 and 4, SI c = 1000 seed 4 as the contrast.
Writes task1_forgetting.json beside this file. Run from the repository root:
``python docs/results/continual-fmnist-20ep-5seeds/task1_forgetting.py [DATA_DIR]``.
"""

import json
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DATA = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
ORDER = [4, 2, 1, 3, 0]
RUNS = [("nai-tc", {"lam": 0.3}, 0), ("nai-tc", {"lam": 0.3}, 4), ("si", {"c": 1000.0}, 4)]


def _q(t, q):
    # torch.quantile takes at most 2**24 entries: a seeded subsample of 100,000 stands in
    # (task1_forgetting.json was written before it was seeded, so its quantiles can differ
    # from a rerun's in the last digits)
    flat = t.flatten().double()
    pick = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:100000]
    return torch.quantile(flat[pick], q)


def _share(omega, name, delta, q):
    if name not in omega:
        return None
    om = omega[name].flatten().double()
    d2 = delta.flatten().double().square()
    low = om <= _q(omega[name], q)
    return float(d2[low].sum() / d2.sum())


def analyse(job):
    from neuron_importance.continual import NAI_TC_DEFAULTS, TrainConfig, make_stream, run_sequence
    from neuron_importance.continual.trainer import build_model, make_strategy

    method, hp, seed = job
    torch.set_num_threads(1)
    hp = {**NAI_TC_DEFAULTS, **hp} if method == "nai-tc" else hp
    stream = make_stream("split-fashion-mnist", order=ORDER, data_dir=DATA)
    cfg = TrainConfig(epochs=20, patience=2, seed=seed)
    tmp = Path(tempfile.mkdtemp())
    ckpt, mid = tmp / "run.pt", tmp / "after_task1.pt"

    def log(line: str) -> None:  # called right after the checkpoint of each task is written
        if f"task {ORDER.index(1) + 1}/5" in line:
            shutil.copy(ckpt, mid)

    res = run_sequence(stream, method, hp, cfg, checkpoint=ckpt, log=log)
    s_mid = torch.load(mid, weights_only=False)
    s_end = torch.load(ckpt, weights_only=False)
    model = build_model(stream, cfg)
    task = stream.tasks[ORDER.index(1)]
    head = model.head_index(task.identity)

    def task1_acc() -> float:
        model.eval()
        with torch.no_grad():
            pred = model(task.x_test, task=head).argmax(1)
        return 100.0 * (pred == task.y_test).float().mean().item()

    # task 1's empirical Fisher at the model after task 1
    model.load_state_dict(s_mid["model"])
    model.eval()
    acc_mid = task1_acc()
    names = [n for n, _ in model.trunk.named_parameters()]
    fisher = {n: torch.zeros_like(p) for n, p in model.trunk.named_parameters()}
    x, y = task.x_train[:2000], task.y_train[:2000]
    for i in range(x.shape[0]):
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 1], task=head), y[i:i + 1]).backward()
        for n, p in model.trunk.named_parameters():
            fisher[n] += p.grad.detach().square() / x.shape[0]
    strat = make_strategy(method, hp, seed=seed)
    strat.load_state_dict(s_mid["strategy"])
    omega = {k.removeprefix("trunk."): v for k, v in getattr(strat, "omega", {}).items()
             if k.startswith("trunk.")}
    mid_p = {n.removeprefix("trunk."): v for n, v in s_mid["model"].items()
             if n.startswith("trunk.")}
    model.load_state_dict(s_end["model"])
    acc_end = task1_acc()
    rows = []
    for n in names:
        p = dict(model.trunk.named_parameters())[n]
        end_value = p.detach().clone()
        delta = end_value - mid_p[n]
        with torch.no_grad():
            p.copy_(mid_p[n])
        restored = task1_acc()
        with torch.no_grad():
            p.copy_(end_value)
        rows.append({"param": n, "restored_task1_acc": restored,
                     "fisher_cost": float(0.5 * (fisher[n] * delta.square()).sum()),
                     "nai_cost": float((omega[n] * delta.square()).sum()) if n in omega else None,
                     "rel_drift": float(delta.norm() / mid_p[n].norm()),
                     # share of the squared drift on the entries whose Ω is below its median
                     # (its 10th percentile): drift the penalty barely charges at any λ
                     "drift_share_below_median_omega": _share(omega, n, delta, 0.5),
                     "drift_share_below_p10_omega": _share(omega, n, delta, 0.1),
                     "omega_zero_fraction": (float((omega[n] == 0).double().mean())
                                             if n in omega else None),
                     "omega_p10_over_median": (float(_q(omega[n], 0.1) / _q(omega[n], 0.5))
                                               if n in omega else None)})
    shutil.rmtree(tmp)
    return {"method": method, "hyperparameters": hp, "seed": seed, "order": ORDER,
            "acc": res.acc, "task1_after_task1": acc_mid, "task1_at_end": acc_end,
            "layers": rows}


if __name__ == "__main__":
    with ProcessPoolExecutor(2) as ex:
        out = list(ex.map(analyse, RUNS))
    (HERE / "task1_forgetting.json").write_text(json.dumps(out, indent=1))
    for r in out:
        print(r["method"], r["seed"], f"ACC {r['acc']:.2f} task1 {r['task1_after_task1']:.2f}"
              f" -> {r['task1_at_end']:.2f}")
        for row in r["layers"]:
            print("  ", row)
