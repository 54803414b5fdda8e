"""Image-level culture head: which culture does this whole field of cells show?"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor


def image_culture_targets(labels_list: Sequence[Tensor], label_culture: Sequence[int],
                          num_cultures: int) -> Tuple[Tensor, Tensor]:
    """Soft culture target of each image from its annotated instances: the fraction of its
    instances per culture (one-hot for a single-culture image). Returns (targets (B, C), valid (B,));
    an image without any annotation with a culture is not valid (left out of the loss)."""
    table = torch.as_tensor(list(label_culture), dtype=torch.long)
    targets, valid = [], []
    for labels in labels_list:
        cult = table.to(labels.device)[labels.long()] if len(labels) else labels.new_zeros(0).long()
        cult = cult[cult >= 0]
        counts = torch.bincount(cult, minlength=num_cultures).float()[:num_cultures]
        valid.append(bool(counts.sum() > 0))
        targets.append(counts / counts.sum().clamp_min(1.0))
    dev = labels_list[0].device if len(labels_list) else None
    return torch.stack(targets).to(dev), torch.tensor(valid, device=dev)


@MODELS.register_module()
class ImageCultureHead(BaseModule):
    """Global culture classifier on the FPN levels: a shared 3x3 conv + ReLU on each level, global
    average pooling, the levels concatenated, one linear layer to the culture logits.

    Trained with soft-target cross-entropy (:func:`image_culture_targets`): a single-culture image
    (every EVICAN image) has a one-hot target; an image whose annotations name several cultures
    (co-culture) keeps its mixture as target, so the head learns to be unsure on such fields,
    which is what the test-time combination reads as "fall back to per-instance evidence".

    Args:
        num_cultures: number of distinct cultures in the class table (label order of first use).
        in_channels: FPN channels. feat_channels: conv channels. num_levels: FPN levels used.
        loss_weight: weight of ``loss_img_culture``.
        detach_features: stop this head's gradient at the FPN, so that the detector trains exactly as
            without the branch (with the gradient, the branch's image labels cost class-agnostic AP at
            the demo budget: docs/culture_from_image.md).
    """

    def __init__(self, num_cultures: int, in_channels: int = 256, feat_channels: int = 128,
                 num_levels: int = 5, loss_weight: float = 1.0, detach_features: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if num_cultures < 1:
            raise ValueError(f'ImageCultureHead: num_cultures must be >= 1, got {num_cultures}')
        self.num_cultures = num_cultures
        self.num_levels = num_levels
        self.loss_weight = loss_weight
        self.detach_features = detach_features
        self.conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.fc = nn.Linear(feat_channels * num_levels, num_cultures)

    def forward(self, x: Sequence[Tensor]) -> Tensor:
        """Culture logits (B, C) from the FPN levels."""
        if len(x) < self.num_levels:
            raise ValueError(f'ImageCultureHead: {len(x)} feature levels, num_levels={self.num_levels}')
        feats = [f.detach() if self.detach_features else f for f in x[:self.num_levels]]
        pooled = [F.relu(self.conv(feat)).mean(dim=(2, 3)) for feat in feats]
        return self.fc(torch.cat(pooled, dim=1))

    def loss(self, x: Sequence[Tensor], labels_list: List[Tensor], label_culture: Sequence[int]) -> dict:
        """``loss_img_culture``: soft-target cross-entropy over the images with a culture."""
        logits = self(x)
        if logits.shape[0] != len(labels_list):
            raise ValueError(f'ImageCultureHead: {logits.shape[0]} images of features, {len(labels_list)} of labels')
        targets, valid = image_culture_targets(labels_list, label_culture, self.num_cultures)
        log_p = F.log_softmax(logits, dim=1)
        per_image = -(targets * log_p).sum(1)
        # mean over the images with a culture; a batch without any still gives a (zero) loss in the
        # graph, as DDP needs every parameter used
        loss = (per_image * valid.float()).sum() / valid.float().sum().clamp_min(1.0)
        return dict(loss_img_culture=self.loss_weight * loss)

    def predict(self, x: Sequence[Tensor]) -> Tensor:
        """Culture posterior (B, C)."""
        return F.softmax(self(x), dim=1)
