"""Finding a layer in a model and capturing (or replacing) its output during a forward pass.

Every layer-level method takes ``layer`` as a module of the model or as its dotted name from
``model.named_modules()`` (e.g. ``"features.3"``). Errors name the layer and what was wrong:
not in the model, never reached by the forward pass, reached more than once, or returning a
tuple without ``layer_output_index``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from torch import Tensor, nn

from ..attribution._common import AttributionError


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> tuple[str, nn.Module]:
    """Return ``(dotted_name, module)`` for a module of ``model`` or its dotted name."""
    if not isinstance(model, nn.Module):
        raise AttributionError("layer methods need an nn.Module model (to find the layer)")
    if isinstance(layer, str):
        modules = dict(model.named_modules())
        if layer not in modules:
            names = [n for n in modules if n][:12]
            raise AttributionError(
                f"layer {layer!r} is not in the model; its modules are named "
                f"{', '.join(repr(n) for n in names)}{' ...' if len(modules) > 13 else ''}"
            )
        return layer, modules[layer]
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name or "<model>", module
        raise AttributionError(
            f"the layer {type(layer).__name__} passed is not a module of this model"
        )
    raise AttributionError(f"layer must be an nn.Module or a dotted name, got {type(layer).__name__}")


@dataclass
class LayerCapture:
    """Outputs of one layer seen during forward passes (most recent last)."""

    name: str
    outputs: list[Tensor] = field(default_factory=list)

    def single(self) -> Tensor:
        """The one output of the last forward pass; errors when the layer ran 0 or 2+ times."""
        if not self.outputs:
            raise AttributionError(
                f"layer {self.name!r} was never reached by the forward pass, so it has no "
                "neurons to score for these inputs"
            )
        if len(self.outputs) > 1:
            shapes = ", ".join(str(tuple(o.shape)) for o in self.outputs)
            raise AttributionError(
                f"layer {self.name!r} ran {len(self.outputs)} times in one forward pass (outputs "
                f"{shapes}); a layer-level score needs a module that is called once"
            )
        return self.outputs[0]


def _select(name: str, out, index: int | None) -> Tensor:
    if isinstance(out, Tensor):
        if index is not None:
            raise AttributionError(
                f"layer {name!r} returns a single tensor of shape {tuple(out.shape)}; "
                "layer_output_index is only for layers that return tuples"
            )
        return out
    if isinstance(out, (tuple, list)):
        shapes = [tuple(o.shape) if isinstance(o, Tensor) else type(o).__name__ for o in out]
        if index is None:
            raise AttributionError(
                f"layer {name!r} returns a {type(out).__name__} of {len(out)} items {shapes}; "
                "pass layer_output_index to choose the tensor whose neurons to score"
            )
        if not -len(out) <= index < len(out) or not isinstance(out[index], Tensor):
            raise AttributionError(
                f"layer_output_index {index} does not select a tensor of layer {name!r} "
                f"(outputs {shapes})"
            )
        return out[index]
    raise AttributionError(f"layer {name!r} returned {type(out).__name__}, not a tensor")


@contextlib.contextmanager
def capture_layer(
    module: nn.Module,
    name: str,
    layer_output_index: int | None = None,
    replace: Callable[[Tensor], Tensor] | None = None,
    protect: bool = False,
) -> Iterator[LayerCapture]:
    """Record the layer's output on every call (optionally replacing it by ``replace(out)``).

    ``protect=True`` hands the model a copy of the output, so that a later in-place op
    (e.g. ``ReLU(inplace=True)`` after the layer) cannot change the recorded tensor.
    """
    if protect and replace is None:
        replace = Tensor.clone
    capture = LayerCapture(name)

    def hook(_mod, _inp, out):
        t = _select(name, out, layer_output_index)
        if replace is not None:
            new = replace(t)
            capture.outputs.append(t if protect else new)
            if isinstance(out, Tensor):
                return new
            items = list(out)
            items[layer_output_index] = new
            return type(out)(items) if isinstance(out, tuple) else items
        capture.outputs.append(t)
        return None

    handle = module.register_forward_hook(hook)
    try:
        yield capture
    finally:
        handle.remove()
