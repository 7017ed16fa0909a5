"""Evaluating importance scores: neuron-ablation curves."""

from .ablation import AblationCurves, ablate_neurons

__all__ = ["AblationCurves", "ablate_neurons"]
