"""Test-time class posterior of a box from its kind (RoI head), its own culture evidence (RoI head)
and the image's culture posterior (image-level culture branch).

The RoI head scores every (culture, kind) class: ``P[j]`` for label j plus background. Per box,
``P(kind) = sum of P over the labels of that kind`` and ``p_inst(c | kind) = P[(c, kind)] / P(kind)``.
The image branch gives ``pi(c)`` with confidence ``g = 1 - H(pi) / log(C)`` (1: one-hot, 0: flat).
The combined posterior keeps ``P(kind)`` (so detection scores and class-agnostic AP are unchanged)
and replaces the culture part:

- ``'product'``: ``q(c | kind) ~ p_inst(c | kind) * pi(c) ** (weight * g)`` (product of the two
  posteriors, the image one tempered by its confidence; a flat ``pi`` changes nothing).
- ``'image'``: ``q(c | kind) = g * pi(c) + (1 - g) * p_inst(c | kind)`` (the kind-only RoI score
  times the image culture where the image branch is sure, per-instance evidence where it is not).

Both degrade to per-instance evidence where the image branch is unsure, which is what keeps a
co-culture image (two cultures in one field: ``pi`` split, ``g`` low) from being forced to one culture.
"""
import math
from typing import Optional, Sequence

import torch
from torch import Tensor

MODES = ('none', 'product', 'image')


def image_confidence(image_probs: Tensor) -> Tensor:
    """``1 - H(pi) / log(C)`` of a culture posterior (last dim); 1 where there is one culture."""
    c = image_probs.shape[-1]
    if c < 2:
        return image_probs.new_ones(image_probs.shape[:-1])
    p = image_probs.clamp_min(1e-12)
    entropy = -(image_probs * p.log()).sum(-1)
    return (1.0 - entropy / math.log(c)).clamp(0.0, 1.0)


def combine_class_probs(probs: Tensor, label_culture: Sequence[int], label_kind: Sequence[int],
                        image_probs: Tensor, mode: str = 'product', weight: float = 1.0,
                        confidence: Optional[float] = None) -> Tensor:
    """Combine one image's per-box class probabilities with its image culture posterior.

    Args:
        probs: (n, K + 1) softmax scores of the RoI head, background last.
        label_culture: culture index (into ``image_probs``) of each of the K labels, -1 for none.
        label_kind: kind index of each label (e.g. 0 cell, 1 nucleus).
        image_probs: (C,) image culture posterior, or (n, C) one per box (a regional posterior:
            :meth:`ImageCultureHead.predict_windows`).
        mode: 'none', 'product' or 'image' (module docstring).
        weight: exponent of the image posterior in 'product' (times the confidence).
        confidence: override the entropy confidence (tests, ablations).

    Returns:
        (n, K + 1) probabilities, background unchanged, each kind's mass unchanged.
    """
    if mode not in MODES:
        raise ValueError(f'image culture combination mode must be one of {MODES}, got {mode!r}')
    n_labels = probs.shape[1] - 1
    if len(label_culture) != n_labels or len(label_kind) != n_labels:
        raise ValueError(f'class table has {len(label_culture)} labels, the RoI head scores {n_labels}')
    if mode == 'none' or probs.shape[0] == 0:
        return probs
    fg = probs[:, :-1]
    culture = torch.as_tensor(list(label_culture), device=probs.device, dtype=torch.long)
    kind = torch.as_tensor(list(label_kind), device=probs.device, dtype=torch.long)
    has_culture = culture >= 0
    g = image_confidence(image_probs) if confidence is None else image_probs.new_tensor(float(confidence))
    if g.dim() == 1:  # one posterior per box: one confidence per box
        g = g[:, None]
    # image posterior per label (1 for labels without a culture: they carry no culture to change)
    pi = torch.where(has_culture, image_probs[..., culture.clamp_min(0)], torch.ones_like(fg[0]))
    n_kinds = int(kind.max()) + 1
    onehot = torch.nn.functional.one_hot(kind, n_kinds).to(fg.dtype)  # (K, kinds)
    kind_mass = fg @ onehot  # (n, kinds)
    p_kind = kind_mass[:, kind]  # (n, K): P(kind of label j)
    p_inst = fg / p_kind.clamp_min(1e-12)
    if mode == 'product':
        q = p_inst * pi.clamp_min(1e-12).pow(weight * g)
    else:
        # the image posterior renormalised over the cultures that have a label of this kind
        pi_kind = (pi @ onehot)[..., kind]
        q = g * (pi / pi_kind.clamp_min(1e-12)) + (1 - g) * p_inst
    q = torch.where(has_culture, q, p_inst)
    q = q / (q @ onehot)[:, kind].clamp_min(1e-12)  # q(. | kind) sums to 1 within each kind
    return torch.cat([p_kind * q, probs[:, -1:]], dim=1)


def culture_index(label_cultures: Sequence) -> tuple:
    """(ordered distinct cultures, culture index per label, -1 where a label has no culture)."""
    names = []
    for c in label_cultures:
        if c is not None and c not in names:
            names.append(c)
    return tuple(names), tuple(names.index(c) if c is not None else -1 for c in label_cultures)
