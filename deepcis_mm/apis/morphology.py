"""Single-cell measurements from instance masks, and nucleus -> cell linking."""
import math
from typing import List, Optional

import cv2
import numpy as np


def measure(mask: np.ndarray, origin=(0, 0)) -> dict:
    """Area, perimeter, equivalent diameter, eccentricity, solidity and centroid of a binary mask (px).

    ``origin``: (x0, y0) of the mask's top-left pixel in the image, for a mask cropped to its box.

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
    cx, cy = float(xs.mean()) + origin[0], float(ys.mean()) + origin[1]
    cov = np.cov(np.stack([xs, ys]).astype(np.float64), bias=True) if area > 1 else np.zeros((2, 2))
    l1, l2 = sorted(np.linalg.eigvalsh(cov), reverse=True)
    ecc = math.sqrt(max(0.0, 1.0 - l2 / l1)) if l1 > 0 else 0.0
    m8 = np.pad(mask, 1).astype(np.uint8)  # a zero border: objects touching the crop edge trace alike
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    perimeter = float(sum(cv2.arcLength(c, True) for c in contours))
    pts = np.stack([xs + 1, ys + 1], 1).astype(np.int32)
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


def parent_label(mask: np.ndarray, origin, labels: np.ndarray) -> Optional[int]:
    """Label (of a label image of disjoint objects) covering more than half of a cropped mask, else None.

    Same rule as :func:`link_nuclei`, in time proportional to the mask's own box.
    """
    x0, y0 = origin
    h, w = mask.shape
    under = labels[y0:y0 + h, x0:x0 + w][mask]
    if not under.size:
        return None
    ids, counts = np.unique(under[under > 0], return_counts=True)
    if not len(ids):
        return None
    best = int(np.argmax(counts))
    return int(ids[best]) if 2 * int(counts[best]) > under.size else None
