"""DeepLIFT contributions of the neurons of a hidden layer.

``C_{Δy Δt} = m⁺_{Δy Δt}·Δy⁺ + m⁻_{Δy Δt}·Δy⁻`` for every neuron ``y`` of the layer (Shrikumar,
Greenside & Kundaje 2017, §3.1–3.3): the same single backward pass of multipliers as for
the inputs, read at the layer instead. When every path from the input to the target
crosses the layer, the contributions sum exactly to ``t(x) − t(x⁰)`` (summation-to-delta
holds at any cut).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..attribution._common import (
    BaselineType,
    TargetType,
    TensorOrTuple,
    convergence_warning,
    format_inputs,
    sum_per_example,
)
from ..attribution.deeplift import DeepLift, SplitContributions, _default_tol
from ._layers import resolve_layer


class LayerDeepLift:
    """DeepLIFT scores of every neuron of ``layer`` (shaped like the layer's output).

    Args:
        model: the model (any eager PyTorch model; see :class:`~neuron_importance.DeepLift`).
        layer: a module of ``model`` or its dotted name from ``named_modules()``. It must run
            once per forward pass.
        rule, output, softmax_mean_subtraction, unsupported, completeness_tol: as for
            :class:`~neuron_importance.DeepLift`.
        layer_output_index: for a layer returning a tuple, which element holds the neurons.
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | str,
        rule: str = "rescale",
        layer_output_index: int | None = None,
        output: str = "logit",
        softmax_mean_subtraction: bool = False,
        unsupported: str = "error",
        completeness_tol: float | None = None,
    ) -> None:
        self.layer_name, self.layer = resolve_layer(model, layer)
        self.layer_output_index = layer_output_index
        self._deeplift = DeepLift(model, rule=rule, output=output,
                                  softmax_mean_subtraction=softmax_mean_subtraction,
                                  unsupported=unsupported, completeness_tol=completeness_tol)
        self.completeness_tol = completeness_tol

    def attribute(
        self,
        inputs: TensorOrTuple,
        baselines: BaselineType = None,
        target: TargetType = None,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        split: bool = False,
    ):
        """Contributions of the layer's neurons to ``t(x) − t(x⁰)``, shaped like its output.

        The convergence delta ``Σ_neurons C − (t(x) − t(x⁰))`` is exactly zero (to rounding)
        when the layer is a cut of the network; otherwise it measures the credit that flows
        around the layer (e.g. through a skip connection), and the completeness warning says so.
        """
        xs, _ = format_inputs(inputs)
        res = self._deeplift._propagate(
            xs, baselines, target, additional_forward_args, split,
            layer=(self.layer, self.layer_name, self.layer_output_index))
        (total,) = res.contribs
        delta = sum_per_example((total,)) - res.delta_t
        result: Tensor | SplitContributions = total
        if split:
            result = SplitContributions(res.contribs_pos[0], res.contribs_neg[0])
        tol = self.completeness_tol or _default_tol(xs[0].dtype)
        convergence_warning(f"LayerDeepLift({self.layer_name!r})", delta, res.delta_t, tol)
        if return_convergence_delta:
            return result, delta.detach()
        return result
