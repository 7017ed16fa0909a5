"""Which intercepted operation is which: the registry that maps an op to its rule family.

Operations reach the interceptor as ``torch.nn.functional.relu``, ``torch.relu``,
``torch.Tensor.relu`` or ``torch.Tensor.relu_`` alike; they are normalised to one name
(``"relu"``) so that a model gets the same rule whichever spelling it uses.

Families:

* ``HOMOGENEOUS``: linear maps with non-negative weights and no offset (reshapes, indexing,
  concatenation, average pooling, sums, eval-mode dropout). DeepLIFT's positive and
  negative parts pass through them unchanged in kind (as in the DeepLIFT authors' Flatten,
  Concat and pooling layers).
* ``AFFINE``: elementwise sums and products with constants (``add``, ``sub``, ``neg``,
  ``mul``/``div`` by a constant, ``where`` with a constant condition, eval batch norm).
* ``MIXING``: dense and convolutional layers (``linear``, ``conv*``, ``matmul`` with a
  constant matrix): the Linear rule of the paper, which re-splits the parts by the sign of
  each ``w·Δx`` term.
* ``ELEMENTWISE``: scalar nonlinearities ``y = f(x)`` (Rescale / RevealCancel).
* ``MAXPOOL``: max pooling (exact cross-max routing).
* ``OUTPUT_ONLY``: softmax / log-softmax, valid only as the model's output (attribution is
  then to the logits).
"""

from __future__ import annotations

from typing import Any

HOMOGENEOUS = frozenset(
    """
    view view_as reshape reshape_as flatten unflatten ravel permute transpose swapaxes swapdims
    t T mT H mH squeeze unsqueeze contiguous clone expand expand_as broadcast_to repeat tile
    narrow select __getitem__ flip fliplr flipud roll rot90 movedim moveaxis split
    split_with_sizes chunk unbind tensor_split unfold as_strided diagonal gather index_select
    take take_along_dim masked_select pixel_shuffle pixel_unshuffle channel_shuffle
    avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d
    adaptive_avg_pool3d sum mean nansum cumsum trace dropout dropout1d dropout2d dropout3d
    alpha_dropout feature_alpha_dropout to float double half bfloat16 type type_as
    interpolate upsample upsample_nearest upsample_bilinear pad identity real
    """.split()
)
# Homogeneous ops whose data argument is a list of tensors.
CONCAT = frozenset("cat concat concatenate stack hstack vstack dstack column_stack".split())
AFFINE = frozenset(
    "add sub subtract rsub neg negative positive mul multiply div divide true_divide where "
    "batch_norm".split()
)
MIXING_DENSE = frozenset("linear matmul mm bmm mv".split())
MIXING_CONV = frozenset(
    "conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d".split()
)
ELEMENTWISE = frozenset(
    """
    relu relu6 leaky_relu prelu rrelu elu selu celu gelu silu mish softplus sigmoid tanh
    hardtanh hardsigmoid hardswish logsigmoid softsign tanhshrink threshold softshrink
    hardshrink exp exp2 expm1 log log1p log2 log10 sqrt rsqrt square pow rpow abs sin cos
    sinh cosh asinh atan arctan erf erfc reciprocal rdiv rtruediv clamp clip clamp_min
    clamp_max logit sign sgn
    """.split()
)
MAXPOOL = frozenset(
    """
    max_pool1d max_pool2d max_pool3d max_pool1d_with_indices max_pool2d_with_indices
    max_pool3d_with_indices adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d
    adaptive_max_pool1d_with_indices adaptive_max_pool2d_with_indices
    adaptive_max_pool3d_with_indices
    """.split()
)
OUTPUT_ONLY = frozenset("softmax log_softmax softmin".split())
# Ops whose result does not depend on the values of their tensor argument.
CONSTANT_RESULT = frozenset(
    "zeros_like ones_like empty_like full_like rand_like randn_like randint_like new_zeros "
    "new_ones new_empty new_full new_tensor".split()
)
# Known ops without a rule, with the reason users see.
NO_RULE_REASONS = {
    "layer_norm": "normalisation divides by an input-dependent statistic",
    "group_norm": "normalisation divides by an input-dependent statistic",
    "instance_norm": "normalisation divides by an input-dependent statistic",
    "local_response_norm": "normalisation divides by an input-dependent statistic",
    "normalize": "normalisation divides by an input-dependent statistic",
    "sort": "sorting has no DeepLIFT rule",
    "argsort": "sorting has no DeepLIFT rule",
    "topk": "top-k selection has no DeepLIFT rule",
    "max": "a max over a dimension has no rule here (use max-pooling)",
    "min": "a min over a dimension has no rule here",
    "amax": "a max over a dimension has no rule here (use max-pooling)",
    "amin": "a min over a dimension has no rule here",
    "detach": "detach() cuts the path from the input to the output, so credit would be lost",
    "data": ".data cuts the path from the input to the output, so credit would be lost",
    "scaled_dot_product_attention": "attention multiplies input-dependent tensors",
    "multi_head_attention_forward": "attention multiplies input-dependent tensors",
    "einsum": "einsum has no rule here (write it as matmul with a constant)",
    "bilinear": "a bilinear layer multiplies two input-dependent tensors",
}

_ALIASES = {
    "radd": "add",
    "iadd": "add",
    "isub": "sub",
    "rmul": "mul",
    "imul": "mul",
    "truediv": "div",
    "itruediv": "div",
    "matmul": "matmul",
    "rmatmul": "rmatmul",
    "abs": "abs",
    "absolute": "abs",
    "arctan": "atan",
}


def op_name(func: Any) -> str:
    """Normalise an intercepted callable to the name the registry uses."""
    name = getattr(func, "__name__", None) or str(func)
    if name == "__get__":  # property access such as ``x.T`` or ``x.shape``
        owner = getattr(func, "__self__", None)
        return getattr(owner, "__name__", name)
    if name.startswith("__") and name.endswith("__") and name != "__getitem__":
        name = name[2:-2]
    elif name.endswith("_") and not name.startswith("_"):
        name = name[:-1]  # in-place spelling: relu_ -> relu
    if name.startswith("_") and name != "__getitem__":
        name = name.lstrip("_")
    return _ALIASES.get(name, name)


def family(name: str) -> str | None:
    """The rule family of a normalised op name, or None when it has no rule."""
    if name in HOMOGENEOUS:
        return "homogeneous"
    if name in CONCAT:
        return "concat"
    if name in AFFINE:
        return "affine"
    if name in MIXING_DENSE or name == "rmatmul":
        return "dense"
    if name in MIXING_CONV:
        return "conv"
    if name in ELEMENTWISE:
        return "elementwise"
    if name in MAXPOOL:
        return "maxpool"
    if name in OUTPUT_ONLY:
        return "output"
    if name in CONSTANT_RESULT:
        return "constant"
    return None
