"""Kolmogorov–Arnold superposition (KST) network built from GP-interpolated activations.

For ``n`` inputs and width ``H`` (default ``2n + 1``, the Kolmogorov–Arnold count)::

    z_q   = Σ_p φ_{q,p}(x̃_p)                 q = 1..H   (inner functions, n·H of them)
    y_o   = Σ_q Φ_{o,q}(z_q) + b_o            o = 1..n_outputs (outer functions, H per output)

with ``x̃ = (x − shift) / scale`` an input normalisation held in buffers (set it from data with
:meth:`KSTNetwork.fit_normalisation`) so that the inputs sit on the control grid. With one
output this is exactly the superposition ``f(x) = Σ_q Φ_q(Σ_p φ_{q,p}(x_p))`` of the theorem
(plus a bias); with several outputs each output has its own outer functions over the shared
hidden sums. Every φ and Φ is a :class:`~neuron_importance.flexible.GPActivation` edge, so the
model has ``n·H + n_outputs·H`` readable 1-D curves and ``(n·H + n_outputs·H)·m + n_outputs``
control values (plus one length-scale per bank when trained).

Initialisation (docs/methods/flexible-activations.md §2): inner functions are random linear
ramps ``y_c = s·X_c`` with ``s ~ N(0, 1/n)``, so each hidden sum starts as a random projection
of unit variance; outer functions are ``±X_c/√H`` (random signs), so the network starts as a
linear model and training is stable.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .gp_activation import GPActivation, _fusable, _FusedBanks, _nan_check


class KSTNetwork(nn.Module):
    """``n_inputs → H inner sums → n_outputs`` Kolmogorov–Arnold network of GP activations.

    Args:
        n_inputs: number of input features ``n``.
        n_outputs: number of outputs (logits for classification).
        width: number of hidden sums ``H`` (default ``2·n_inputs + 1``).
        n_control: control points per function (both layers).
        x_range: control grid of the inner functions, in normalised input units.
        hidden_range: control grid of the outer functions (default ``x_range``).
        lengthscale, trainable_positions, trainable_lengthscale, jitter, extrapolation: as in
            :class:`GPActivation`, for both banks.
        bias: learn an output bias.
        generator: a ``torch.Generator`` for the random initial ramps (default: global RNG).

    Input ``(N, n_inputs)`` → output ``(N, n_outputs)``. The model is an ordinary
    ``nn.Module``: train it with any torch optimizer; the library's DeepLIFT, Integrated
    Gradients and neuron-level methods apply to it (``model.inner``/``model.outer`` are the two
    banks; the hidden sums are ``model.hidden(x)``).
    """

    def __init__(
        self,
        n_inputs: int,
        n_outputs: int = 1,
        width: int | None = None,
        n_control: int = 8,
        x_range: tuple[float, float] = (-3.0, 3.0),
        hidden_range: tuple[float, float] | None = None,
        lengthscale: float | None = None,
        trainable_positions: bool = False,
        trainable_lengthscale: bool = True,
        jitter: float = 1e-6,
        extrapolation: str = "linear",
        bias: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        for name, v in (("n_inputs", n_inputs), ("n_outputs", n_outputs)):
            if int(v) != v or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        width = 2 * int(n_inputs) + 1 if width is None else width
        if int(width) != width or width < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self.n_inputs, self.n_outputs, self.width = int(n_inputs), int(n_outputs), int(width)
        common = dict(n_control=n_control, lengthscale=lengthscale,
                      trainable_positions=trainable_positions,
                      trainable_lengthscale=trainable_lengthscale, jitter=jitter,
                      extrapolation=extrapolation)
        n, h, o = self.n_inputs, self.width, self.n_outputs
        # Inner edge (q, p) is column q·n + p; outer edge (o, q) is column o·H + q.
        slopes = torch.randn(h * n, 1, generator=generator) / math.sqrt(n)
        self.inner = GPActivation(h * n, x_range=x_range,
                                  init=lambda c: slopes.to(c.dtype) * c, **common)
        signs = torch.randint(0, 2, (o * h, 1), generator=generator) * 2.0 - 1.0
        self.outer = GPActivation(o * h, x_range=hidden_range or x_range,
                                  init=lambda c: signs.to(c.dtype) * c / math.sqrt(h), **common)
        self.bias = nn.Parameter(torch.zeros(o)) if bias else None
        self.register_buffer("input_shift", torch.zeros(n))
        self.register_buffer("input_scale", torch.ones(n))

    # ------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def fit_normalisation(self, x: Tensor, eps: float = 1e-8) -> KSTNetwork:
        """Set the input normalisation to z-scores of ``x`` (constant features get scale 1)."""
        x = torch.as_tensor(x)
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"expected data of shape (N, {self.n_inputs}), got {tuple(x.shape)}")
        if _nan_check(x):
            raise ValueError("fit_normalisation received NaN values")
        x = x.to(self.input_shift)
        std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(x[0])
        self.input_shift.copy_(x.mean(0))
        self.input_scale.copy_(torch.where(std > eps, std, torch.ones_like(std)))
        return self

    # ------------------------------------------------------------------ forward
    def normalise(self, x: Tensor) -> Tensor:
        """``(x − shift) / scale``: the inputs as the inner functions see them."""
        return (x - self.input_shift) / self.input_scale

    def inner_edges(self, x: Tensor) -> Tensor:
        """Per-edge inner outputs ``φ_{q,p}(x̃_p)``, shape ``(N, H, n)``."""
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"KSTNetwork expects input of shape (N, {self.n_inputs}), "
                             f"got {tuple(x.shape)}")
        xn = self.normalise(x)
        rep = xn.unsqueeze(1).expand(-1, self.width, -1).reshape(x.shape[0], -1)
        return self.inner(rep).reshape(x.shape[0], self.width, self.n_inputs)

    def hidden(self, x: Tensor) -> Tensor:
        """The hidden sums ``z_q = Σ_p φ_{q,p}(x̃_p)``, shape ``(N, H)``.

        Summed from the per-edge tensor of :meth:`inner_edges` (exactly its ``.sum(-1)``);
        ``forward`` computes the same sums on the fast path of
        :meth:`GPActivation.grouped_sum` (equal up to float rounding).
        """
        return self.inner_edges(x).sum(-1)

    def _hidden_fast(self, x: Tensor) -> Tensor:
        """The hidden sums without the ``(N, H·n, m)`` tensor: kernel features once per input."""
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"KSTNetwork expects input of shape (N, {self.n_inputs}), "
                             f"got {tuple(x.shape)}")
        return self.inner.grouped_sum(self.normalise(x))

    def outer_edges(self, z: Tensor) -> Tensor:
        """Per-edge outer outputs ``Φ_{o,q}(z_q)``, shape ``(N, n_outputs, H)``."""
        rep = z.unsqueeze(1).expand(-1, self.n_outputs, -1).reshape(z.shape[0], -1)
        return self.outer(rep).reshape(z.shape[0], self.n_outputs, self.width)

    def forward(self, x: Tensor) -> Tensor:
        """``y_o = Σ_q Φ_{o,q}(Σ_p φ_{q,p}(x̃_p)) + b_o``, shape ``(N, n_outputs)``.

        Equal to ``outer_edges(hidden(x)).sum(-1) + bias`` (up to float rounding) without the
        per-edge tensors. With fixed control grids and no torch-function interception the whole
        network is one fused autograd node (``_FusedBanks``, analytic backward); otherwise
        (DeepLIFT's op interception, trainable positions, functorch transforms) it is built
        from ordinary torch ops.
        """
        if x.dim() != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"KSTNetwork expects input of shape (N, {self.n_inputs}), "
                             f"got {tuple(x.shape)}")
        if (not (self.inner.trainable_positions or self.outer.trainable_positions)
                and not (self.input_shift.requires_grad or self.input_scale.requires_grad)
                and _fusable(x)):
            return _FusedBanks.apply(x, self.input_shift, self.input_scale, self.bias,
                                     (self.inner, self.outer), self.inner.values,
                                     self.inner.log_lengthscale, self.outer.values,
                                     self.outer.log_lengthscale)
        y = self.outer.grouped_sum(self._hidden_fast(x))
        if self.bias is not None:
            y = y + self.bias
        return y

    @property
    def n_functions(self) -> int:
        """Number of learned 1-D functions (inner plus outer)."""
        return self.inner.n_edges + self.outer.n_edges

    def extra_repr(self) -> str:
        return (f"n_inputs={self.n_inputs}, width={self.width}, n_outputs={self.n_outputs}, "
                f"n_functions={self.n_functions}")
