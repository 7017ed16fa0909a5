"""The networks of the continual-learning benchmarks: an MLP trunk with one head per task.

``ContinualMLP(784, (400, 400), head_sizes=(2,) * 5)`` is the multi-head MLP of Split MNIST
(UCL / Hsu et al.); ``head_sizes=(10,), shared_head=True`` the single-head network of Permuted
MNIST and of class-incremental learning. The trunk is a plain ``nn.Sequential`` of
``Linear, ReLU`` pairs (each followed by ``Dropout`` when ``dropout > 0``, as in the UCL / HAT
MLPs, which use 0.5), so the neuron-importance API (layer names ``"trunk.1"``, ...) and the
NAI regulariser can walk it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = ["ContinualMLP"]


class ContinualMLP(nn.Module):
    """MLP trunk + task heads.

    ``forward(x, task)``: ``task`` is the head to use, an int or a LongTensor with one head
    index per example (mixed-task batches, e.g. joint training); ignored with a shared head.
    """

    def __init__(
        self,
        n_inputs: int = 784,
        hidden: Sequence[int] = (400, 400),
        head_sizes: Sequence[int] = (2, 2, 2, 2, 2),
        shared_head: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not (0.0 <= dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not hidden:
            raise ValueError("hidden must name at least one hidden layer width")
        if shared_head and len(set(head_sizes)) != 1:
            raise ValueError(f"a shared head needs one output size, got {tuple(head_sizes)}")
        layers: list[nn.Module] = []
        width = n_inputs
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        self.trunk = nn.Sequential(*layers)
        sizes = head_sizes[:1] if shared_head else head_sizes
        self.heads = nn.ModuleList(nn.Linear(width, int(k)) for k in sizes)
        self.shared_head = shared_head
        self.config = {
            "n_inputs": n_inputs, "hidden": [int(h) for h in hidden],
            "head_sizes": [int(k) for k in head_sizes], "shared_head": shared_head,
            "dropout": float(dropout),
        }

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
