"""Named architectures, weight files and cached training for the CLI and experiments.

DeepLIFT and GuidedBackprop need a Python model; TorchScript and ExportedProgram files load too,
but only the gradient methods (Saliency, InputXGradient, IntegratedGradients) work on them.
"""

from neuron_importance.models.training import (
    cache_path,
    cached_model,
    evaluate_accuracy,
    train_classifier,
)
from neuron_importance.models.zoo import (
    KNOWN_MODELS,
    build_model,
    is_python_model,
    load_model,
    load_state_dict_file,
    save_weights,
)

__all__ = [
    "KNOWN_MODELS",
    "build_model",
    "cache_path",
    "cached_model",
    "evaluate_accuracy",
    "is_python_model",
    "load_model",
    "load_state_dict_file",
    "save_weights",
    "train_classifier",
]
