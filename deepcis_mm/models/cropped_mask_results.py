"""Mask results cropped to their objects from the mask head on: :func:`crop_mask_results` makes every
:class:`~mmdet.models.roi_heads.mask_heads.FCNMaskHead` of a model return ``(x0, y0, bool crop)`` per
instance instead of instances x image masks (``deepcis predict``, :class:`~deepcis_mm.apis.Predictor`).

Uses mmdet's private ``_do_paste_mask`` (the pasting FCNMaskHead itself does).
"""
import types
from typing import Optional, Tuple

import numpy as np
import torch
from mmdet.models.roi_heads.mask_heads import FCNMaskHead
from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask


def tight_crop(mask: np.ndarray) -> Optional[Tuple[int, int, np.ndarray]]:
    """(x0, y0, crop) of the smallest box holding every pixel of ``mask``; None if empty."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    if not len(rows):
        return None
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return int(x0), int(y0), np.ascontiguousarray(mask[y0:y1, x0:x1])


def cropped_predict_by_feat_single(self, mask_preds, bboxes, labels, img_meta, rcnn_test_cfg,
                                   rescale=False, activate_map=False):
    """FCNMaskHead's mask pasting, one instance at a time into its own box (mmdet's CPU path pastes
    box by box too, then copies into an instances x image array): returns [(x0, y0, bool crop)]."""
    scale_factor = bboxes.new_tensor(img_meta['scale_factor']).repeat((1, 2))
    img_h, img_w = img_meta['ori_shape'][:2]
    if not activate_map:
        mask_preds = mask_preds.sigmoid()
    if rescale:
        bboxes /= scale_factor
    else:
        img_h = int(round(img_h * float(scale_factor[0, 1])))
        img_w = int(round(img_w * float(scale_factor[0, 0])))
    n = len(mask_preds)
    if not self.class_agnostic:
        mask_preds = mask_preds[range(n), labels][:, None]
    thr = rcnn_test_cfg.mask_thr_binary
    crops = []
    for i in range(n):
        probs, (ys, xs) = _do_paste_mask(mask_preds[i:i + 1], bboxes[i:i + 1], img_h, img_w, skip_empty=True)
        found = tight_crop((probs[0] >= thr).cpu().numpy())
        if found is None:
            crops.append(None)
        else:
            x0, y0, crop = found
            crops.append((int(xs.start) + x0, int(ys.start) + y0, crop))
    return crops


def crop_mask_results(model: torch.nn.Module) -> None:
    """Every FCNMaskHead of ``model`` returns cropped masks (:func:`cropped_predict_by_feat_single`;
    in place)."""
    for module in model.modules():
        if isinstance(module, FCNMaskHead):
            module._predict_by_feat_single = types.MethodType(cropped_predict_by_feat_single, module)
