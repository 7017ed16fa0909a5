"""Training small classifiers, and caching their weights on disk.

``cached_model`` keys the cache by a hash of ``(spec, config)``: change any training setting and
a new model is trained; rerun with the same settings and the weights are read back in well
under a second. Weights are written atomically, so an interrupted run never leaves a file that a
later run would trust; a file that fails to load anyway (disk trouble, a hand-edited cache) is
deleted and the model retrained.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neuron_importance.models.zoo import build_model, load_model, save_weights

__all__ = ["cache_path", "cached_model", "evaluate_accuracy", "train_classifier"]

#: bump when the training code changes in a way that makes old cached weights stale
CACHE_FORMAT = 1


def train_classifier(
    model: nn.Module,
    train_x: Tensor,
    train_y: Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    progress: bool = True,
    lr_decay: float = 1.0,
) -> nn.Module:
    """Train with Adam and cross-entropy on shuffled mini-batches; return the model in eval mode.

    ``lr_decay`` multiplies the learning rate after every epoch (1.0: constant).

    Deterministic for a given ``seed`` (initial weights are the caller's; the shuffling and
    dropout masks come from ``seed``). Shows a tqdm bar with the running loss and accuracy.
    """
    from tqdm.auto import tqdm

    if len(train_x) != len(train_y):
        raise ValueError(f"train_x has {len(train_x)} examples but train_y has {len(train_y)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError("epochs and batch_size must be positive")
    train_x = torch.as_tensor(train_x, dtype=torch.float32)
    train_y = torch.as_tensor(train_y, dtype=torch.long)
    n = len(train_x)
    gen = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, lr_decay)
    loss_fn = nn.CrossEntropyLoss()
    steps_per_epoch = (n + batch_size - 1) // batch_size
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        bar = tqdm(
            total=epochs * steps_per_epoch,
            desc="training",
            unit="batch",
            disable=not progress,
            leave=False,
        )
        try:
            for epoch in range(epochs):
                order = torch.randperm(n, generator=gen)
                seen = correct = 0
                loss_sum = 0.0
                for start in range(0, n, batch_size):
                    idx = order[start : start + batch_size]
                    xb, yb = train_x[idx], train_y[idx]
                    optimizer.zero_grad(set_to_none=True)
                    logits = model(xb)
                    loss = loss_fn(logits, yb)
                    loss.backward()
                    optimizer.step()
                    seen += len(idx)
                    loss_sum += float(loss.detach()) * len(idx)
                    correct += int((logits.argmax(1) == yb).sum())
                    bar.update(1)
                    bar.set_postfix(
                        epoch=f"{epoch + 1}/{epochs}",
                        loss=f"{loss_sum / seen:.3f}",
                        acc=f"{correct / seen:.3f}",
                        refresh=False,
                    )
                schedule.step()
        finally:
            bar.close()
    return model.eval()


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1000) -> float:
    """Fraction of examples whose arg-max logit equals the label (model switched to eval)."""
    model.eval()
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    correct = 0
    for start in range(0, len(x), batch_size):
        correct += int((model(x[start : start + batch_size]).argmax(1) == y[start : start + batch_size]).sum())
    return correct / max(len(x), 1)


def _config_hash(spec: str, config: Mapping[str, Any]) -> str:
    blob = json.dumps(
        {"spec": spec, "config": dict(config), "format": CACHE_FORMAT},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_path(spec: str, config: Mapping[str, Any], cache_dir: str | os.PathLike) -> Path:
    """Where :func:`cached_model` keeps the weights for ``(spec, config)``."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", spec).strip("_") or "model"
    return Path(cache_dir) / f"{safe}-{_config_hash(spec, config)}.safetensors"


def cached_model(
    spec: str,
    config: Mapping[str, Any],
    train_fn: Callable[[nn.Module], nn.Module | None],
    cache_dir: str | os.PathLike,
    log: Callable[[str], None] | None = None,
) -> nn.Module:
    """Load ``spec``'s weights from the cache, or build, train with ``train_fn`` and cache them.

    ``config`` should hold every setting that changes the trained weights (data, epochs, seed,
    ...): the cache file name contains a hash of ``(spec, config)``. ``train_fn`` receives the
    freshly built model and returns the trained one (or ``None`` after training it in place).
    A cache file that cannot be loaded is removed and the model retrained. Returns the model in
    eval mode.
    """
    say = log or (lambda _msg: None)
    path = cache_path(spec, config, cache_dir)
    if path.exists():
        try:
            model = load_model(spec, path)
        except Exception as err:  # corrupt/truncated/stale file: anything means "retrain"
            say(f"cached weights {path} are unreadable ({err}); retraining")
            path.unlink(missing_ok=True)
        else:
            say(f"loaded cached weights from {path}")
            return model
    seed = config.get("seed", 0)
    with torch.random.fork_rng(devices=[]):
        # initial weights depend on the seed in the config, not on whatever ran before
        torch.manual_seed(int(seed) if isinstance(seed, int) else 0)
        model = build_model(spec)
    trained = train_fn(model)
    model = trained if trained is not None else model
    save_weights(
        model,
        path,
        metadata={"spec": spec, "config": json.dumps(dict(config), sort_keys=True, default=str)},
    )
    say(f"saved weights to {path}")
    return model.eval()
