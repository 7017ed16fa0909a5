"""Errors raised while running a model under operation interception."""

from __future__ import annotations


class UnsupportedOperationError(RuntimeError):
    """An operation on input-dependent values has no propagation rule.

    DeepLIFT is only exact when every operation between the input and the target has a rule
    (linear, elementwise nonlinearity, max-pooling, ...). Anything else (a product of two
    input-dependent tensors, sorting, normalisation by an input statistic, attention) would
    give a silently wrong answer, so it is an error that names the operation and the line of
    the model that called it. Pass ``unsupported="gradient"`` to the method to fall back to
    the gradient for such operations instead (summation-to-delta is then no longer exact).
    """

    def __init__(self, op: str, where: str, reason: str):
        self.op = op
        self.where = where
        self.reason = reason
        super().__init__(f"no DeepLIFT rule for '{op}' called at {where}: {reason}")
