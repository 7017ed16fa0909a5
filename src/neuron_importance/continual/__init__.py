"""Continual learning with neuron activation importance (Kim & Lee 2021) and its baselines.

* :mod:`.streams`: Split MNIST, Permuted MNIST, Split Fashion-MNIST from the IDX files, any task
  order, validation split.
* :mod:`.models`: the multi-head MLP.
* :mod:`.strategies`: fine-tuning, joint, L2, EWC / online EWC, SI, MAS behind one interface;
  :mod:`.nai`: the NAI regulariser with its documented switches.
* :mod:`.trainer`: the one training loop, checkpointed after every task, resumable.
* :mod:`.metrics`: ACC, BWT, FWT, forgetting, intransigence from the accuracy matrix.
* :mod:`.seed_bootstrap`: how often a study's goal comparisons hold when its training seeds
  are resampled.

See ``docs/continual.md`` and ``neuron-importance reproduce continual``.
"""

from .metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    intransigence,
    learned_and_final,
    summarise,
)
from .models import ContinualCNN, ContinualMLP, MultiHeadNet
from .nai import NAI, NAIOptions
from .seed_bootstrap import acc_table, goal_support
from .strategies import EWC, L2, MAS, SI, FineTune, Joint, Strategy, TaskData
from .streams import BENCHMARKS, SHARED_HEAD_BENCHMARKS, Task, TaskStream, check_order, make_stream
from .trainer import (
    METHODS,
    NAI_TC_DEFAULTS,
    NAI_TC_OPTIONS,
    RunResult,
    TrainConfig,
    TrainingDiverged,
    make_strategy,
    run_sequence,
)

__all__ = [
    "BENCHMARKS", "EWC", "L2", "MAS", "METHODS", "NAI", "NAI_TC_DEFAULTS", "NAI_TC_OPTIONS",
    "SHARED_HEAD_BENCHMARKS", "SI", "ContinualCNN", "ContinualMLP", "MultiHeadNet", "FineTune",
    "Joint", "NAIOptions", "RunResult", "Strategy", "Task", "TaskData", "TaskStream",
    "TrainConfig", "TrainingDiverged", "acc_table", "average_accuracy", "backward_transfer",
    "check_order", "forgetting", "forward_transfer", "goal_support", "intransigence",
    "learned_and_final", "make_stream", "make_strategy", "run_sequence", "summarise",
]
