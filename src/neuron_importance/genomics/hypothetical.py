"""Hypothetical contributions, projection onto the sequence, and first-conv mean-normalisation.

Formulas from ``docs/methods/deeplift.md`` §8 and the DeepLIFT reference code
(``deeplift.util.get_hypothetical_contribs_func_onehot`` and
``deeplift.util.mean_normalise_weights_for_sequence_convolution``). Tensors are channels-first,
``(..., 4, L)`` with channels A, C, G, T.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn


def hypothetical_contributions(multipliers: Tensor, references: Tensor) -> Tensor:
    """Hypothetical contributions of every base at every position, ``(N, 4, L)``.

    ``hyp[b, j] = mean_r Σ_{b'} m_r[b', j] · (e_b[b'] − r[b', j])
               = mean_r ( m_r[b, j] − Σ_{b'} m_r[b', j] · r[b', j] )``

    i.e. the contribution position ``j`` would have if it held base ``b`` (one-hot ``e_b``),
    using the DeepLIFT multipliers found for the actual input. At the observed base it equals
    the actual contribution ``Σ_{b'} m[b', j] (x[b', j] − r[b', j])`` averaged over references.
    This is the input TF-MoDISco expects (``deeplift.util.get_hypothetical_contribs_func_onehot``).

    Args:
        multipliers: ``(N, R, 4, L)``, the multipliers of the target w.r.t. the one-hot input
            computed against reference ``r`` (``(N, 4, L)`` is taken as ``R = 1``).
        references: the references, broadcastable to ``multipliers`` (e.g. ``(N, R, 4, L)`` or
            one ``(4, L)`` background).
    """
    if multipliers.dim() == 3:
        multipliers = multipliers.unsqueeze(1)
        if references.dim() == 3:
            references = references.unsqueeze(1)
    if multipliers.dim() != 4 or multipliers.shape[2] != 4:
        raise ValueError(
            f"multipliers must be (N, R, 4, L) (or (N, 4, L)), got {tuple(multipliers.shape)}"
        )
    try:
        references = torch.broadcast_to(references.to(multipliers), multipliers.shape)
    except RuntimeError:
        raise ValueError(
            f"references of shape {tuple(references.shape)} do not broadcast to the multipliers' "
            f"shape {tuple(multipliers.shape)}"
        ) from None
    # Σ_{b'} m[b', j] r[b', j]: the part of every hypothetical that does not depend on b.
    ref_term = (multipliers * references).sum(dim=2, keepdim=True)
    return (multipliers - ref_term).mean(dim=1)


def project_onto_sequence(scores: Tensor, onehot: Tensor, *, hypothetical: bool = False) -> Tensor:
    """Per-position scores ``(N, L)`` from per-base scores ``(N, 4, L)``.

    * Actual contributions (default): ``score_j = Σ_b C[b, j]``. With a non-zero reference the
      absent bases carry contribution too (their ``Δx = −r``); the DeepLIFT authors sum over
      A, C, G, T and show the total on the observed base, which keeps summation-to-delta.
      ``onehot`` is used to check shapes (and an ``N`` column keeps its contribution of
      ``0 − r``).
    * ``hypothetical=True`` (scores from :func:`hypothetical_contributions`): the score of the
      base actually present, ``score_j = Σ_b hyp[b, j] · x[b, j]`` (0 at ``N`` columns). For
      one-hot ``x`` this equals the default projection of the actual contributions.

    To draw the result as a logo on the observed bases use ``onehot * score.unsqueeze(1)``.
    """
    if scores.dim() != 3 or scores.shape[1] != 4:
        raise ValueError(f"scores must be (N, 4, L), got {tuple(scores.shape)}")
    if onehot.shape != scores.shape:
        raise ValueError(
            f"onehot has shape {tuple(onehot.shape)} but scores have {tuple(scores.shape)}"
        )
    if hypothetical:
        return (scores * onehot.to(scores)).sum(dim=1)
    return scores.sum(dim=1)


def mean_normalise_first_conv(conv: nn.Conv1d) -> nn.Conv1d:
    """A copy of a first-layer ``Conv1d`` with weights mean-centred across the input channels.

    Per output filter ``f`` and kernel offset ``k``
    (``deeplift.util.mean_normalise_weights_for_sequence_convolution``)::

        μ[f, k] = mean_b W[f, b, k]
        W̄[f, b, k] = W[f, b, k] − μ[f, k]
        b̄[f] = b[f] + Σ_k μ[f, k]

    On one-hot input (``Σ_b x[b, j] = 1``) the output is unchanged, while the per-position
    offset, which the data cannot identify, no longer leaks into the multipliers of absent
    bases. The output *does* change wherever the window covers an all-zero column (``N`` bases
    or zero padding), so a padded convolution triggers a warning. A conv without bias gets one.
    """
    if not isinstance(conv, nn.Conv1d):
        raise TypeError(f"expected nn.Conv1d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(
            f"mean-normalisation needs groups=1 (every filter sees all bases), got {conv.groups}"
        )
    pads = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    has_padding = pads not in ("valid", (0,)) and not (pads == "same" and conv.kernel_size[0] == 1)
    # Only zero padding inserts all-zero columns; reflect/replicate/circular pad with real
    # one-hot columns, for which the output is unchanged.
    if has_padding and conv.padding_mode == "zeros":
        warnings.warn(
            f"conv has padding={conv.padding!r} with zeros: the padded positions are all-zero "
            "columns, so the mean-normalised conv gives different outputs at the sequence edges",
            stacklevel=2,
        )
    new = copy.deepcopy(conv)
    with torch.no_grad():
        weight = conv.weight.detach()
        mu = weight.mean(dim=1, keepdim=True)  # (F, 1, K)
        new.weight.copy_(weight - mu)
        shift = mu.sum(dim=(1, 2))  # Σ_k μ[f, k]
        if conv.bias is not None:
            new.bias.copy_(conv.bias.detach() + shift)
        else:
            new.bias = nn.Parameter(shift.clone())
    return new
