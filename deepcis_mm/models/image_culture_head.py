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

    def predict_windows(self, x: Sequence[Tensor], boxes: Tensor, img_shape: Tuple[int, int],
                        batch_input_shape: Tuple[int, int], window: float, batch_index: int = 0) -> Tensor:
        """Regional culture posterior (n, C) of each box of one image: the head applied to the square
        window of side ``window`` x the image's shorter side centred on the box (clipped to the image).

        Average pooling and the linear layer commute, so the window's logits are the means of the
        per-location contributions ``W_l . relu(conv(x_l))`` over the window on each level, summed,
        plus the bias: the global head, read locally. On a co-culture field each region gets its own
        culture instead of the field's majority. ``boxes`` (n, 4) and ``img_shape`` (h, w) are in input
        pixels; ``batch_input_shape`` is the padded batch's (h, w), which the feature maps cover.
        """
        if not 0 < window:
            raise ValueError(f'ImageCultureHead: window must be > 0 (fraction of the shorter side), got {window}')
        h_img, w_img = img_shape
        half = 0.5 * window * min(h_img, w_img)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        x0, x1 = (cx - half).clamp(0, w_img), (cx + half).clamp(0, w_img)
        y0, y1 = (cy - half).clamp(0, h_img), (cy + half).clamp(0, h_img)
        feat_ch = self.conv.out_channels
        logits = self.fc.bias.expand(len(boxes), -1).clone()
        for lvl, feat in enumerate(x[:self.num_levels]):
            feat = feat[batch_index:batch_index + 1]
            contrib = torch.einsum('cf,fhw->chw', self.fc.weight[:, lvl * feat_ch:(lvl + 1) * feat_ch],
                                   F.relu(self.conv(feat))[0])
            h, w = contrib.shape[-2:]
            stride = batch_input_shape[0] / h  # input pixels per feature cell
            integral = F.pad(contrib.cumsum(1).cumsum(2), (1, 0, 1, 0))  # (C, h + 1, w + 1)
            c0 = (x0 / stride).floor().long().clamp(0, w - 1)
            r0 = (y0 / stride).floor().long().clamp(0, h - 1)
            c1 = torch.maximum((x1 / stride).ceil().long().clamp(1, w), c0 + 1)
            r1 = torch.maximum((y1 / stride).ceil().long().clamp(1, h), r0 + 1)
            total = integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]
            logits = logits + (total / ((r1 - r0) * (c1 - c0)).float()).t()
        return F.softmax(logits, dim=1)
