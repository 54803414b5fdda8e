"""Single-cell measurements from instance masks, and nucleus -> cell linking."""
import math
from typing import List, Optional

import cv2
import numpy as np


def _largest_contour(mask: np.ndarray):
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return max(contours, key=cv2.contourArea) if contours else None


def measure(mask: np.ndarray) -> dict:
    """Area, perimeter, equivalent diameter, eccentricity, solidity and centroid of a binary mask (px).

    area: pixel count; perimeter: length of the outer contour through pixel centres (all parts);
    eccentricity: of the ellipse with the same second moments (0 circle, -> 1 line);
    solidity: area / convex-hull area (hull through pixel centres, so one-pixel objects give 1).
    """
    mask = mask.astype(bool)
    area = int(mask.sum())
    if area == 0:
        return dict(area=0, perimeter=0.0, equivalent_diameter=0.0, eccentricity=0.0, solidity=0.0,
                    centroid_x=float('nan'), centroid_y=float('nan'))
    ys, xs = np.nonzero(mask)
    cx, cy = float(xs.mean()), float(ys.mean())
    cov = np.cov(np.stack([xs, ys]).astype(np.float64), bias=True) if area > 1 else np.zeros((2, 2))
    l1, l2 = sorted(np.linalg.eigvalsh(cov), reverse=True)
    ecc = math.sqrt(max(0.0, 1.0 - l2 / l1)) if l1 > 0 else 0.0
    m8 = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = float(sum(cv2.arcLength(c, True) for c in contours))
    pts = np.stack([xs, ys], 1).astype(np.int32)
    hull = cv2.convexHull(pts)
    hull_mask = np.zeros_like(m8)
    cv2.fillPoly(hull_mask, [hull], 1)
    solidity = area / max(int(hull_mask.sum()), area)
    return dict(area=area, perimeter=perimeter, equivalent_diameter=math.sqrt(4 * area / math.pi),
                eccentricity=ecc, solidity=float(solidity), centroid_x=cx, centroid_y=cy)


def link_nuclei(nucleus_masks: List[np.ndarray], cell_masks: List[np.ndarray]) -> List[Optional[int]]:
    """For each nucleus, the index of the cell that contains most of it (> half its area), else None."""
    parents = []
    for nm in nucleus_masks:
        n_area = int(nm.sum())
        best, best_overlap = None, 0
        for j, cm in enumerate(cell_masks):
            overlap = int(np.logical_and(nm, cm).sum())
            if overlap > best_overlap:
                best, best_overlap = j, overlap
        parents.append(best if n_area and best_overlap * 2 > n_area else None)
    return parents


def mask_polygon(mask: np.ndarray) -> Optional[List[List[float]]]:
    """Outer ring of the largest part of a mask as [[x, y], ...] (closed), or None if empty."""
    c = _largest_contour(mask)
    if c is None or len(c) < 3:
        return None
    ring = [[float(x), float(y)] for x, y in c[:, 0, :]]
    return ring + [ring[0]]
