"""neuron-importance: exact DeepLIFT, Integrated Gradients and neuron importance for PyTorch.

The public classes follow Captum's call convention::

    DeepLift(model, rule="reveal_cancel").attribute(inputs, baselines=None, target=None,
                                                   additional_forward_args=None)

Classes are imported lazily so that ``import neuron_importance`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Saliency": "neuron_importance.attribution.gradient",
    "InputXGradient": "neuron_importance.attribution.gradient",
    "GuidedBackprop": "neuron_importance.attribution.guided_backprop",
    "IntegratedGradients": "neuron_importance.attribution.integrated_gradients",
    "DeepLift": "neuron_importance.attribution.deeplift",
    "DeepLiftShap": "neuron_importance.attribution.deeplift_shap",
    "AttributionError": "neuron_importance.attribution._common",
    "CompletenessWarning": "neuron_importance.attribution._common",
    "UnsupportedOperationError": "neuron_importance.engine.errors",
    "TotalConductance": "neuron_importance.neurons.conductance",
    "LayersTotalConductance": "neuron_importance.neurons.conductance",
    "NeuronConductance": "neuron_importance.neurons.conductance",
    "LayerDeepLift": "neuron_importance.neurons.layer_deeplift",
    "LayerActivation": "neuron_importance.neurons.activation",
    "activation_statistics": "neuron_importance.neurons.activation",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'neuron_importance' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
