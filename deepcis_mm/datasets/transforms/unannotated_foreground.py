"""Ignore regions on likely-unannotated cells of partially annotated images (EVICAN train/val).

EVICAN annotates only some cells of a train/val image; every other cell would be a background example
for the RPN and the RoI heads. :class:`UnannotatedForegroundToIgnore` estimates the image's
cell-covered area from the image itself, removes the annotated objects (with a margin) and appends each
remaining blob as an *ignored* instance (``gt_ignore_flags`` True, box = the blob's bounding box, mask =
the blob). mmdet's ``PackDetInputs`` puts them into ``ignored_instances``; the assigners then skip
anchors/RoIs on them (``MaxIoUAssigner(ignore_iof_thr=...)`` or :class:`KnownBackgroundAssigner`).

How the cell-covered area is estimated (:func:`unannotated_foreground`), at a scale ``r`` = the
equivalent radius of a typical annotated object of the image (upper quartile of the areas, as cells and
their nuclei are both annotated):

1. flatten the illumination: gray image minus its Gaussian blur at sigma ``4 r``;
2. local contrast: standard deviation of the flattened image in a Gaussian window of sigma
   ``contrast_scale * r`` (cells carry texture, outlines and halos; background is smooth noise);
3. threshold the log contrast halfway (``threshold_mix``) between the image's median (background: cells
   cover a minority of EVICAN fields) and the median inside the annotated objects (known cells), so the
   threshold adapts to each image's contrast and noise; a 3x3 opening removes isolated pixels;
4. unknown foreground = that area minus the annotated objects dilated by ``margin * r`` (their halos and
   outline uncertainty); blobs smaller than ``min_area`` x that typical area are dropped.

An image without annotated objects of its own gets no ignore region (no calibration is possible).
"""
from typing import List, Optional, Tuple

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS
from mmdet.structures.mask import BitmapMasks, PolygonMasks


def _gray(img: np.ndarray) -> np.ndarray:
    img = img.astype(np.float32)
    return img.mean(axis=2) if img.ndim == 3 else img


# above this many pixels (real EVICAN fields), the wide illumination blur runs at reduced resolution
LARGE_IMAGE_PIXELS = 1024 * 1024


def _illumination(gray: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur at ``sigma``; on large images computed at 1/f resolution (f = sigma / 8), which
    keeps a 2000 px field at tens of milliseconds instead of seconds (the blur is smooth anyway)."""
    h, w = gray.shape
    f = int(sigma // 8)
    if h * w <= LARGE_IMAGE_PIXELS or f < 2:
        return cv2.GaussianBlur(gray, (0, 0), sigma)
    small = cv2.resize(gray, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
    return cv2.resize(cv2.GaussianBlur(small, (0, 0), sigma / f), (w, h), interpolation=cv2.INTER_LINEAR)


def unannotated_foreground(img: np.ndarray, annotated: np.ndarray, contrast_scale: float = 0.5,
                           threshold_mix: float = 0.5, margin: float = 1.0, min_area: float = 0.25
                           ) -> Tuple[List[np.ndarray], dict]:
    """Blobs of likely-unannotated foreground (see the module docstring).

    Args:
        img: HxW or HxWxC image. annotated: N x H x W binary masks of the annotated objects.
    Returns:
        (list of H x W bool masks, one per blob; info dict with ``radius``, ``threshold`` and the
        estimated ``foreground`` mask).
    """
    h, w = img.shape[:2]
    annotated = np.asarray(annotated, dtype=bool).reshape(-1, h, w)
    areas = annotated.reshape(len(annotated), h * w).sum(1)
    areas = areas[areas > 0]
    if not len(areas):
        return [], dict(radius=None, threshold=None, foreground=None)
    # cells and their nuclei are both annotated: the upper quartile of areas is a typical cell
    typical = float(np.percentile(areas, 75))
    radius = max(1.0, float(np.sqrt(typical / np.pi)))
    gray = _gray(img)
    flat = gray - _illumination(gray, 4 * radius)
    s = max(0.5, contrast_scale * radius)
    mean = cv2.GaussianBlur(flat, (0, 0), s)
    contrast = np.log(np.sqrt(np.maximum(cv2.GaussianBlur(flat * flat, (0, 0), s) - mean * mean, 0)) + 1e-3)
    union = annotated.any(0).astype(np.uint8)
    inner = cv2.erode(union, np.ones((3, 3), np.uint8))
    known = contrast[inner > 0] if inner.any() else contrast[union > 0]
    bg_level, fg_level = float(np.median(contrast)), float(np.median(known))
    threshold = bg_level + threshold_mix * (fg_level - bg_level)
    fg = (contrast > threshold).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    k = max(1, int(round(margin * radius)))
    near = cv2.dilate(union, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    unknown = fg & (1 - near)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(unknown, connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area * typical]
    return [labels == i for i in keep], dict(radius=radius, threshold=threshold, foreground=fg.astype(bool))


def _polygons(mask: np.ndarray) -> List[np.ndarray]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = [c.reshape(-1).astype(np.float64) for c in contours if len(c) >= 3]
    return polys or [np.array([0, 0, 0, 1, 1, 1], np.float64)]


@TRANSFORMS.register_module()
class UnannotatedForegroundToIgnore(BaseTransform):
    """Append likely-unannotated foreground of a partially annotated image as ignored instances.

    Place it after ``LoadAnnotations`` (before resizing/flipping, which then move the regions with the
    objects). Needs ``gt_masks``; the regions come as instances with ``gt_ignore_flags`` True, label 0,
    box = blob bounding box, mask = blob. Pair it with assigners that honour them (see
    ``configs/partial_annotation/``). The arguments are those of :func:`unannotated_foreground`.

    Only for training on partially annotated data: on fully annotated data it can only remove negatives.
    """

    def __init__(self, contrast_scale: float = 0.5, threshold_mix: float = 0.5, margin: float = 1.0,
                 min_area: float = 0.25):
        if not 0 < threshold_mix < 1:
            raise ValueError(f'UnannotatedForegroundToIgnore: threshold_mix must be in (0, 1), got {threshold_mix}')
        self.kwargs = dict(contrast_scale=contrast_scale, threshold_mix=threshold_mix, margin=margin,
                           min_area=min_area)

    def transform(self, results: dict) -> Optional[dict]:
        if 'gt_masks' not in results:
            raise KeyError('UnannotatedForegroundToIgnore: no gt_masks; put it after '
                           'LoadAnnotations(with_mask=True)')
        masks = results['gt_masks']
        h, w = results['img'].shape[:2]
        flags = np.asarray(results.get('gt_ignore_flags', np.zeros(len(masks), bool)), bool)
        annotated = masks.to_ndarray()[~flags] if len(masks) else np.zeros((0, h, w), np.uint8)
        blobs, _ = unannotated_foreground(results['img'], annotated, **self.kwargs)
        if not blobs:
            return results
        boxes = []
        for b in blobs:
            ys, xs = np.nonzero(b)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        boxes = np.asarray(boxes, np.float32)
        gt_bboxes = results['gt_bboxes']
        results['gt_bboxes'] = gt_bboxes.cat([gt_bboxes, type(gt_bboxes)(boxes)]) \
            if hasattr(gt_bboxes, 'cat') else np.concatenate([gt_bboxes, boxes]).astype(np.float32)
        results['gt_bboxes_labels'] = np.concatenate(
            [results['gt_bboxes_labels'], np.zeros(len(blobs), results['gt_bboxes_labels'].dtype)])
        results['gt_ignore_flags'] = np.concatenate([flags, np.ones(len(blobs), bool)])
        if isinstance(masks, BitmapMasks):
            new = BitmapMasks(np.stack(blobs).astype(masks.masks.dtype if len(masks) else np.uint8), h, w)
        elif isinstance(masks, PolygonMasks):
            new = PolygonMasks([_polygons(b) for b in blobs], h, w)
        else:
            raise TypeError(f'UnannotatedForegroundToIgnore: unsupported mask type {type(masks).__name__}')
        results['gt_masks'] = type(masks).cat([masks, new])
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(' + ', '.join(f'{k}={v}' for k, v in self.kwargs.items()) + ')'
