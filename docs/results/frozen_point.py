"""One run of a CNN folder's two-order reading at the point it froze (session 26).

Used by ``task_uncertainty_probe.py`` and ``sequence_scale.py``: both re-train a method of a
folder's ``tune-orders-2`` reading (its settings and chosen hyperparameters, the study's seed
and protocol) on one task order, outside the study, to read what the run's strategy measured.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from neuron_importance.continual import RunResult, make_stream, run_sequence
from neuron_importance.experiments.continual import StudySettings


def train_frozen_point(folder: Path, method: str, data: str,
                       order: Sequence[int] | None = None,
                       checkpoint: Path | None = None) -> tuple[RunResult, dict]:
    """``method`` trained at ``folder``'s two-order point on ``order`` (default: identity);
    returns the run's result and its hyperparameters. With ``checkpoint``, a finished run is
    read back from it instead of trained again."""
    saved = json.loads((folder / "tune-orders-2" / "results.json").read_text())
    settings = StudySettings.from_saved(saved["settings"])
    (benchmark,) = settings.benchmarks
    hp = saved["chosen_hyperparameters"][benchmark][method]
    stream = make_stream(benchmark, data_dir=data)
    if order is not None:
        stream = stream.reordered(order)
    config = settings.train_config(settings.epochs[benchmark], settings.seed)
    return run_sequence(stream, method, hp, config, checkpoint=checkpoint), hp
