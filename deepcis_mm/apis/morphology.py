"""Single-cell measurements from instance masks, and nucleus -> cell linking."""
from typing import List, Optional

import numpy as np
from skimage.measure import regionprops


def measure(mask: np.ndarray, origin=(0, 0)) -> dict:
    """Area, perimeter, equivalent diameter, eccentricity, solidity and centroid of a binary mask (px),
    by scikit-image's ``regionprops`` (all parts of the mask as one object).

    ``origin``: (x0, y0) of the mask's top-left pixel in the image, for a mask cropped to its box.

    area: pixel count; perimeter: length of the contour through the centres of border pixels;
    eccentricity: of the ellipse with the same second moments (0 circle, -> 1 line);
    solidity: area / convex-hull area.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return dict(area=0, perimeter=0.0, equivalent_diameter=0.0, eccentricity=0.0, solidity=0.0,
                    centroid_x=float('nan'), centroid_y=float('nan'))
    props = regionprops(mask.astype(np.uint8))[0]
    cy, cx = props.centroid
    return dict(area=int(props.area), perimeter=float(props.perimeter),
                equivalent_diameter=float(props.equivalent_diameter_area),
                eccentricity=float(props.eccentricity), solidity=float(props.solidity),
                centroid_x=float(cx) + origin[0], centroid_y=float(cy) + origin[1])


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
