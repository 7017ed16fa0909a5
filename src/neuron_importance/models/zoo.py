"""Named architectures, and loading models with their weights from files.

``build_model(spec)`` knows a few architectures by name (see :data:`KNOWN_MODELS`) plus
``mlp:IN-H1-...-OUT``; ``load_model(spec, weights)`` builds one and fills in weights from a
``.safetensors`` file or a ``.pt``/``.pth`` *state dict*. Weight files are never unpickled as
arbitrary objects: ``.pt`` files go through ``torch.load(..., weights_only=True)``.

``spec`` may also be the path of a whole model saved by PyTorch:

* a TorchScript archive (``torch.jit.save``), loaded with ``torch.jit.load``;
* an ExportedProgram (``torch.export.save``, usually ``.pt2``), loaded with
  ``torch.export.load(path).module()``.

Gradient methods (Saliency, InputXGradient, IntegratedGradients) work on every kind of model.
DeepLIFT, DeepLiftShap and GuidedBackprop replace the backward pass of individual operations and
therefore need a Python ``nn.Module`` (a named architecture, or your own class with
``--weights``); the DeepLift class refuses TorchScript with an explanation.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

PathLike = str | os.PathLike

__all__ = [
    "KNOWN_MODELS",
    "GlobalAvgPool1d",
    "build_model",
    "is_python_model",
    "load_model",
    "load_state_dict_file",
    "save_weights",
]


class GlobalAvgPool1d(nn.Module):
    """Average over the length axis: ``(N, C, L) -> (N, C)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=-1)


def _mnist_cnn() -> nn.Module:
    # The DeepLIFT paper's MNIST net as we define it (docs/methods/deeplift.md, section 9):
    # 28x28 -> 13x13 -> 5x5, 64 * 5 * 5 = 1600 features.
    return nn.Sequential(
        nn.Conv2d(1, 32, kernel_size=4, stride=2),
        nn.ReLU(),
        nn.Conv2d(32, 64, kernel_size=4, stride=2),
        nn.ReLU(),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(1600, 128),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(128, 10),
    )


def _digits_cnn() -> nn.Module:
    # scikit-learn's 8x8 digits: 8x8 -> 8x8 (padded) -> 4x4, 32 * 4 * 4 = 512 features.
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(512, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def _genomics_cnn() -> nn.Module:
    # The DeepLIFT genomics simulation net (docs/methods/deeplift.md): one-hot (N, 4, 200)
    # -> (N, 50, 190) -> (N, 50, 180) -> global average pool -> 3 task logits.
    return nn.Sequential(
        nn.Conv1d(4, 50, kernel_size=11),
        nn.ReLU(),
        nn.Conv1d(50, 50, kernel_size=11),
        nn.ReLU(),
        GlobalAvgPool1d(),
        nn.Linear(50, 50),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Linear(50, 3),
    )


#: name -> (constructor, one-line description with the expected input shape)
KNOWN_MODELS: dict[str, tuple[Callable[[], nn.Module], str]] = {
    "mnist_cnn": (_mnist_cnn, "DeepLIFT paper MNIST CNN, input (N, 1, 28, 28), 10 classes"),
    "digits_cnn": (_digits_cnn, "small CNN for scikit-learn digits, input (N, 1, 8, 8), 10 classes"),
    "genomics_cnn": (
        _genomics_cnn,
        "DeepLIFT genomics CNN, one-hot DNA input (N, 4, L) with L >= 21, 3 task logits",
    ),
}

_MLP_RE = re.compile(r"^mlp:(\d+(?:-\d+)+)$")


def _known_specs() -> str:
    return ", ".join([*KNOWN_MODELS, "mlp:IN-H1-...-OUT (e.g. mlp:4-16-3)"])


def _build_mlp(spec: str) -> nn.Module:
    m = _MLP_RE.match(spec.replace(" ", ""))
    if m is None:
        raise ValueError(
            f"bad MLP spec {spec!r}: expected mlp:IN-H1-...-OUT with positive integers, "
            "e.g. mlp:4-16-3"
        )
    sizes = [int(s) for s in m.group(1).split("-")]
    if any(s <= 0 for s in sizes):
        raise ValueError(f"bad MLP spec {spec!r}: layer sizes must be positive")
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def build_model(spec: str) -> nn.Module:
    """Build an untrained model from a name in :data:`KNOWN_MODELS` or ``mlp:IN-H1-...-OUT``.

    The MLP flattens its input first, then alternates ``Linear`` and ``ReLU`` (no activation
    after the last layer). Raises ``ValueError`` naming the known specs for anything else.
    """
    spec = spec.strip()
    if spec.startswith("mlp:"):
        return _build_mlp(spec)
    if spec in KNOWN_MODELS:
        return KNOWN_MODELS[spec][0]()
    raise ValueError(f"unknown model {spec!r}; known models: {_known_specs()}")


# --------------------------------------------------------------------------- weights

def _first_line(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    if not text:
        return type(err).__name__
    first = text.splitlines()[0]
    return first.split(". ")[0].rstrip(".")


_STATE_DICT_WRAPPERS = ("state_dict", "model_state_dict", "model")


def load_state_dict_file(path: PathLike) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a ``.pt``/``.pth``/``.bin`` file.

    ``torch.load`` runs with ``weights_only=True``, so a file holding pickled Python objects
    (a whole ``nn.Module``, custom classes) is refused instead of executed. A checkpoint dict
    that wraps the state dict under ``state_dict``/``model_state_dict``/``model`` is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:  # pragma: no cover - safetensors is an 'io' extra
            raise ValueError(
                "reading .safetensors needs the safetensors package (pip install safetensors)"
            ) from err
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # SafetensorError and friends: report, don't trace
            raise ValueError(f"cannot read weights file {path}: {err}") from err
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {path}: it holds pickled Python objects (such as a whole "
            "nn.Module), not a plain state dict, and weights are only read with "
            "weights_only=True. Save weights with torch.save(model.state_dict(), path) or "
            "safetensors."
        ) from err
    except Exception as err:  # RuntimeError on a non-torch file, EOFError, ...
        raise ValueError(f"cannot read weights file {path}: {_first_line(err)}") from err
    if isinstance(obj, Mapping):
        for key in _STATE_DICT_WRAPPERS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(
                isinstance(v, Tensor) for v in inner.values()
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items()
    ):
        raise ValueError(
            f"weights file {path} does not hold a state dict (a mapping of parameter names to "
            f"tensors) but a {type(obj).__name__}; save weights with "
            "torch.save(model.state_dict(), path)"
        )
    return dict(obj)


def _check_state_dict(model: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if mismatched:
        k = mismatched[0]
        more = f" (and {len(mismatched) - 1} more)" if len(mismatched) > 1 else ""
        raise ValueError(
            f"{what} do not match the model: parameter {k!r} has shape "
            f"{tuple(state[k].shape)} in the file but {tuple(expected[k].shape)} in the "
            f"model{more}"
        )
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(repr(k) for k in missing[:4])}"
                         + (" ..." if len(missing) > 4 else ""))
        if unexpected:
            parts.append(f"unexpected {', '.join(repr(k) for k in unexpected[:4])}"
                         + (" ..." if len(unexpected) > 4 else ""))
        raise ValueError(f"{what} do not match the model: {'; '.join(parts)}")


_MODEL_FILE_SUFFIXES = {".pt", ".pth", ".pt2", ".ts", ".jit", ".torchscript", ".zip"}


def _looks_like_path(spec: str) -> bool:
    return (
        "/" in spec
        or os.sep in spec
        or Path(spec).suffix.lower() in _MODEL_FILE_SUFFIXES
        or Path(spec).is_file()
    )


def _load_model_file(path: Path) -> nn.Module:
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.suffix.lower() == ".pt2":
        try:
            module = torch.export.load(str(path)).module()
        except Exception as err:
            raise ValueError(f"cannot load ExportedProgram {path}: {err}") from err
        return module
    try:
        with warnings.catch_warnings():
            # torch >= 2.10 deprecates TorchScript; loading an existing archive is still the
            # user's explicit request, so don't nag about it
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as err:
        raise ValueError(
            f"{path} is not a TorchScript archive ({_first_line(err)}); for a state dict pass the "
            f"architecture as the model and the file as weights (--model NAME --weights {path})"
        ) from err


def is_python_model(model: nn.Module) -> bool:
    """False for TorchScript modules and exported programs (graphs of ``aten`` ops).

    DeepLIFT, DeepLiftShap and GuidedBackprop change the backward pass of individual Python-level
    operations, so they need a Python model; on a compiled one they would fail or, worse, fall
    back to plain gradients without noticing.
    """
    if isinstance(model, torch.jit.ScriptModule):
        return False
    if isinstance(model, torch.fx.GraphModule):
        return not any(
            isinstance(node.target, torch._ops.OpOverload) for node in model.graph.nodes
        )
    return True


def _set_eval(model: nn.Module) -> nn.Module:
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):
        # Some torch versions refuse .eval() on exported GraphModules; they were exported in
        # the mode they should be used in, so there is nothing to switch.
        pass
    return model


def load_model(spec: str | nn.Module, weights: PathLike | None = None) -> nn.Module:
    """Return a model in eval mode.

    ``spec`` is a name from :data:`KNOWN_MODELS`, ``mlp:IN-H1-...-OUT``, an ``nn.Module``,
    or the path of a TorchScript archive / ExportedProgram (``.pt2``). ``weights`` (for a named
    spec or module) is a ``.safetensors`` file or a ``.pt``/``.pth`` state dict; a parameter
    whose shape differs from the model's is reported by name.

    DeepLIFT and GuidedBackprop need a Python model (not TorchScript); gradient methods work on
    all three kinds.
    """
    if isinstance(spec, nn.Module):
        model = spec
        what = "weights"
    else:
        spec = str(spec).strip()
        if not spec.startswith("mlp:") and spec not in KNOWN_MODELS and _looks_like_path(spec):
            if weights is not None:
                raise ValueError(
                    f"{spec} is a saved model that already holds its weights; drop the weights "
                    "file, or give an architecture name with it"
                )
            return _set_eval(_load_model_file(Path(spec)))
        model = build_model(spec)
        what = f"weights for {spec!r}"
    if weights is not None:
        state = load_state_dict_file(weights)
        _check_state_dict(model, state, f"{what} in {weights}")
        model.load_state_dict(state, strict=True)
    return _set_eval(model)


def save_weights(
    model: nn.Module, path: PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``model.state_dict()`` as safetensors, atomically (temp file + rename).

    A crash or kill mid-write leaves either the old file or no file, never a truncated one.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # clone() un-shares storage (safetensors refuses tensors that share memory)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(state, tmp, metadata=dict(metadata) if metadata else None)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path

