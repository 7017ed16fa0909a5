"""One small CNN written with every spelling of ReLU, for the DeepLift and GuidedBackprop tests.

Each spelling is the same function with the same weights (see :func:`same_weights`):
conv → ReLU → conv → ReLU → 2×2 pool → linear → ReLU → linear, on inputs of shape (2, 8, 8).
``ModuleReLUs`` (one ``nn.ReLU`` module per use) is the spelling Captum handles; the others
are functional, method, in-place, reused-module, keyword-argument and statement (in-place,
result discarded) ReLUs. The pooling is a parameter: the DeepLift tests use average pooling,
the GuidedBackprop tests max pooling.

Imported as ``relu_spellings`` (conftest.py puts tests/ on ``sys.path``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_POOLS = {
    "avg": (nn.AvgPool2d, F.avg_pool2d),
    "max": (nn.MaxPool2d, F.max_pool2d),
}


class Weights(nn.Module):
    """The layers of the CNN, shared by every ReLU spelling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.fc1 = nn.Linear(4 * 4 * 4, 8)
        self.fc2 = nn.Linear(8, 3)


def spelling_nets(pool: str, *, inplace_views: bool = False) -> dict[str, type[nn.Module]]:
    """The ReLU spellings with ``pool`` ("avg" or "max") 2×2 pooling, by class name.

    ``inplace_views``: ``StatementInplaceReLU`` rectifies its last hidden layer in place
    through two views of it (``h[:, :4]``, ``h[:, 4:]``) rather than as a whole tensor.
    """
    pool_module, pool_fn = _POOLS[pool]

    class ModuleReLUs(Weights):
        def __init__(self) -> None:
            super().__init__()
            self.r1, self.r2, self.r3 = nn.ReLU(), nn.ReLU(), nn.ReLU()
            self.pool = pool_module(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.r1(self.conv1(x))
            h = self.pool(self.r2(self.conv2(h)))
            return self.fc2(self.r3(self.fc1(h.flatten(1))))

    class FunctionalReLU(Weights):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.conv1(x))
            h = pool_fn(F.relu(self.conv2(h)), 2)
            return self.fc2(F.relu(self.fc1(h.flatten(1))))

    class TorchReLU(Weights):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.conv1(x))
            h = pool_fn(torch.relu(self.conv2(h)), 2)
            return self.fc2(torch.relu(self.fc1(h.flatten(1))))

    class MethodReLU(Weights):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv1(x).relu()
            h = pool_fn(self.conv2(h).relu(), 2)
            return self.fc2(self.fc1(h.flatten(1)).relu())

    class InplaceReLU(Weights):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.relu(self.conv1(x), inplace=True)
            h = pool_fn(self.conv2(h).relu_(), 2)
            return self.fc2(torch.relu_(self.fc1(h.flatten(1))))

    class ReusedReLU(Weights):
        def __init__(self) -> None:
            super().__init__()
            self.relu = nn.ReLU()
            self.pool = pool_module(2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.relu(self.conv1(x))
            h = self.pool(self.relu(self.conv2(h)))
            return self.fc2(self.relu(self.fc1(h.flatten(1))))

    class KwargReLU(Weights):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(input=self.conv1(x))
            h = pool_fn(F.relu(input=self.conv2(h)), 2)
            return self.fc2(torch.relu(input=self.fc1(h.flatten(1))))

    class StatementInplaceReLU(Weights):
        """In-place ReLUs whose return value is discarded: the model relies on the mutation."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv1(x)
            h.relu_()
            h = self.conv2(h)
            F.relu(h, inplace=True)
            h = self.fc1(pool_fn(h, 2).flatten(1))
            if inplace_views:  # two views of one tensor, each rectified in place
                torch.relu_(h[:, :4])
                torch.relu_(h[:, 4:])
            else:
                torch.relu_(h)
            return self.fc2(h)

    classes = (ModuleReLUs, FunctionalReLU, TorchReLU, MethodReLU, InplaceReLU, ReusedReLU,
               KwargReLU, StatementInplaceReLU)
    return {cls.__name__: cls for cls in classes}


def same_weights(cls: type[nn.Module], dtype: torch.dtype) -> nn.Module:
    """A ``cls`` with the weights every spelling shares (seed 5), as ``dtype``, in eval mode."""
    torch.manual_seed(5)
    ref = Weights()
    model = cls()
    model.load_state_dict(ref.state_dict())
    return model.to(dtype).eval()
