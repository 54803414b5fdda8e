"""MaxIoUAssigner whose negatives come only from known background (partially annotated images)."""
from typing import Optional

import numpy as np
import torch
from mmdet.models.task_modules.assigners import AssignResult, MaxIoUAssigner
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_overlaps
from mmengine.structures import InstanceData
from torch import Tensor


def unknown_fraction(boxes: Tensor, ignore: InstanceData) -> Tensor:
    """Fraction of each box's area (x1, y1, x2, y2) that lies on the ignored regions: on their masks'
    pixels when ``ignore`` has masks (integral image), else on their boxes (max IoF)."""
    if 'masks' in ignore and len(ignore.masks):
        union = np.asarray(ignore.masks.to_ndarray(), bool).any(0)
        h, w = union.shape
        integral = torch.zeros((h + 1, w + 1), dtype=torch.float64, device=boxes.device)
        integral[1:, 1:] = torch.from_numpy(union.astype(np.float64)).to(boxes.device).cumsum(0).cumsum(1)
        b = boxes.detach().to(torch.float64)
        x1, x2 = b[:, 0].floor().clamp(0, w).long(), b[:, 2].ceil().clamp(0, w).long()
        y1, y2 = b[:, 1].floor().clamp(0, h).long(), b[:, 3].ceil().clamp(0, h).long()
        inside = integral[y2, x2] - integral[y1, x2] - integral[y2, x1] + integral[y1, x1]
        area = ((b[:, 2] - b[:, 0]).clamp(min=1) * (b[:, 3] - b[:, 1]).clamp(min=1))
        return (inside / area).clamp(0, 1).to(boxes.dtype)
    return bbox_overlaps(boxes, ignore.bboxes.to(boxes), mode='iof').max(dim=1).values


@TASK_UTILS.register_module()
class KnownBackgroundAssigner(MaxIoUAssigner):
    """:class:`MaxIoUAssigner` that turns a would-be negative into "ignored" when more than
    ``max_unknown_frac`` of its box lies on an ignored region (e.g. the likely-unannotated cells that
    :class:`UnannotatedForegroundToIgnore` adds), so the sampler draws background examples only from
    regions known to be background; positives are assigned exactly as upstream.

    Unlike upstream ``ignore_iof_thr`` (which drops every prior mostly inside an ignore box, positives
    included), this keeps positives and is strict on negatives, on the regions' pixels rather than their
    boxes. Without ignored instances it is upstream's assigner.
    """

    def __init__(self, *args, max_unknown_frac: float = 0.1, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0 <= max_unknown_frac < 1:
            raise ValueError(f'KnownBackgroundAssigner: max_unknown_frac must be in [0, 1), got {max_unknown_frac}')
        self.max_unknown_frac = max_unknown_frac

    def assign(self, pred_instances: InstanceData, gt_instances: InstanceData,
               gt_instances_ignore: Optional[InstanceData] = None, **kwargs) -> AssignResult:
        result = super().assign(pred_instances, gt_instances, gt_instances_ignore, **kwargs)
        if gt_instances_ignore is None or len(gt_instances_ignore) == 0:
            return result
        neg = result.gt_inds == 0
        if neg.any():
            priors = pred_instances.priors
            frac = unknown_fraction(priors[neg], gt_instances_ignore).to(result.gt_inds.device)
            idx = torch.nonzero(neg, as_tuple=False).squeeze(1)
            result.gt_inds[idx[frac > self.max_unknown_frac]] = -1
        return result
