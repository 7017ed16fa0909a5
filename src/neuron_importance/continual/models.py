"""The networks of the continual-learning benchmarks: a shared trunk with one head per task.

``ContinualMLP(784, (400, 400), head_sizes=(2,) * 5)`` is the multi-head MLP of Split MNIST
(UCL / Hsu et al.); ``head_sizes=(10,), shared_head=True`` the single-head network of Permuted
MNIST and of class-incremental learning. The trunk is a plain ``nn.Sequential`` of
``Linear, ReLU`` pairs (each followed by ``Dropout`` when ``dropout > 0``, as in the UCL / HAT
MLPs, which use 0.5), so the neuron-importance API (layer names ``"trunk.1"``, ...) and the
NAI regulariser can walk it.

``ContinualCNN(784, conv=(16, 32), hidden=(256,))`` puts LeNet-style ``Conv2d(5×5), ReLU,
MaxPool2d(2)`` blocks in front of the fully connected layers (the small convolutional trunk of
the HAT / UCL split benchmarks; LeCun et al. 1998). It reads the same flattened 28×28 inputs
(the trunk begins with an ``Unflatten``), and NAI treats each channel of a convolution as one
unit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = ["ContinualCNN", "ContinualMLP", "MultiHeadNet"]


def _fc_layers(width: int, hidden: Sequence[int], dropout: float) -> list[nn.Module]:
    if not (0.0 <= dropout < 1.0):
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    return layers


class MultiHeadNet(nn.Module):
    """A shared ``trunk`` (``nn.Sequential``) + task heads; subclasses build the trunk.

    ``forward(x, task)``: ``task`` is the head to use, an int or a LongTensor with one head
    index per example (mixed-task batches, e.g. joint training); ignored with a shared head.
    """

    trunk: nn.Sequential
    heads: nn.ModuleList
    shared_head: bool
    config: dict

    def _add_heads(self, width: int, head_sizes: Sequence[int], shared_head: bool) -> None:
        if shared_head and len(set(head_sizes)) != 1:
            raise ValueError(f"a shared head needs one output size, got {tuple(head_sizes)}")
        sizes = head_sizes[:1] if shared_head else head_sizes
        self.heads = nn.ModuleList(nn.Linear(width, int(k)) for k in sizes)
        self.shared_head = shared_head

    def forward(self, x: Tensor, task: int | Tensor | None = None) -> Tensor:
        h = self.trunk(x.reshape(x.shape[0], -1))
        if self.shared_head:
            return self.heads[0](h)
        if task is None:
            raise ValueError(
                f"this model has {len(self.heads)} task heads; pass task= (the head index)"
            )
        if isinstance(task, Tensor) and task.dim() > 0:
            sizes = {head.out_features for head in self.heads}
            if len(sizes) != 1:
                raise ValueError("mixed-task batches need heads of one output size")
            out = torch.stack([head(h) for head in self.heads], 1)  # (N, T, k)
            idx = task.to(out.device).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
            return out.gather(1, idx).squeeze(1)
        t = int(task)
        if not 0 <= t < len(self.heads):
            raise ValueError(f"task head {t} out of range: the model has {len(self.heads)} heads")
        return self.heads[t](h)

    def head_index(self, identity: int) -> int:
        """The head a task identity uses (0 for a shared head)."""
        return 0 if self.shared_head else identity

    def shared_named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Parameters every task uses: the trunk, plus the head when it is shared.

        These are what continual-learning penalties regularise; task heads are trained only on
        their own task and left alone afterwards (notes §1, "multi-head setups").
        """
        for name, p in self.named_parameters():
            if name.startswith("trunk.") or self.shared_head:
                yield name, p


class ContinualMLP(MultiHeadNet):
    """MLP trunk (``Linear, ReLU`` pairs) + task heads."""

    def __init__(
        self,
        n_inputs: int = 784,
        hidden: Sequence[int] = (400, 400),
        head_sizes: Sequence[int] = (2, 2, 2, 2, 2),
        shared_head: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not hidden:
            raise ValueError("hidden must name at least one hidden layer width")
        self.trunk = nn.Sequential(*_fc_layers(n_inputs, hidden, dropout))
        self._add_heads(int(hidden[-1]), head_sizes, shared_head)
        self.config = {
            "n_inputs": n_inputs, "hidden": [int(h) for h in hidden],
            "head_sizes": [int(k) for k in head_sizes], "shared_head": shared_head,
            "dropout": float(dropout),
        }


class ContinualCNN(MultiHeadNet):
    """Convolutional trunk + fully connected layers + task heads.

    The trunk: ``Unflatten`` to ``image_shape``, then per entry c of ``conv`` a block
    ``Conv2d(c_prev, c, kernel), ReLU, MaxPool2d(2)`` (no padding), then ``Flatten`` and the
    ``Linear, ReLU`` pairs of ``hidden`` (each followed by ``Dropout`` when ``dropout > 0``).
    ``image_shape`` defaults to one channel of a square image. With 28×28 inputs, 5×5 kernels
    and two blocks the last feature map is 4×4.
    """

    def __init__(
        self,
        n_inputs: int = 784,
        conv: Sequence[int] = (16, 32),
        hidden: Sequence[int] = (256,),
        head_sizes: Sequence[int] = (2, 2, 2, 2, 2),
        shared_head: bool = False,
        dropout: float = 0.0,
        image_shape: Sequence[int] | None = None,
        kernel: int = 5,
    ) -> None:
        super().__init__()
        if image_shape is None:  # a square one-channel image (MNIST's 784 = 28²)
            side = round(n_inputs ** 0.5)
            if side * side != n_inputs:
                raise ValueError(f"{n_inputs} input features are no square image: pass "
                                 "image_shape=(channels, height, width)")
            image_shape = (1, side, side)
        if not conv:
            raise ValueError("conv must name at least one convolution's channel count "
                             "(use ContinualMLP for a network without convolutions)")
        c, h, w = (int(v) for v in image_shape)
        if c * h * w != n_inputs:
            raise ValueError(f"image_shape {tuple(image_shape)} has {c * h * w} values, but "
                             f"the inputs have {n_inputs} features")
        layers: list[nn.Module] = [nn.Unflatten(1, (c, h, w))]
        for out in conv:
            h, w = (h - kernel + 1) // 2, (w - kernel + 1) // 2
            if h < 1 or w < 1:
                raise ValueError(f"conv {tuple(conv)} with {kernel}x{kernel} kernels and 2x2 "
                                 f"pooling shrinks the {tuple(image_shape)} image to nothing")
            layers += [nn.Conv2d(c, int(out), kernel), nn.ReLU(), nn.MaxPool2d(2)]
            c = int(out)
        layers.append(nn.Flatten())
        layers += _fc_layers(c * h * w, hidden, dropout)
        self.trunk = nn.Sequential(*layers)
        self._add_heads(int(hidden[-1]) if hidden else c * h * w, head_sizes, shared_head)
        self.config = {
            "n_inputs": n_inputs, "conv": [int(v) for v in conv],
            "hidden": [int(v) for v in hidden], "head_sizes": [int(k) for k in head_sizes],
            "shared_head": shared_head, "dropout": float(dropout),
            "image_shape": [int(v) for v in image_shape], "kernel": int(kernel),
        }
