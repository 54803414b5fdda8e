"""One image's instances with masks cropped to their pixel extent, and the one overlap rule.

A full-image mask per instance costs instances x image area (820 detections on a 2048^2 image took
12.9 GB); a crop costs the instance's own box. Every export (CSV, label images, GeoJSON, COCO,
overlay) is made from the same :class:`Instances` after :func:`resolve_overlaps`.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..models.cropped_mask_results import tight_crop


@dataclass
class Instances:
    """Detections of one image of ``shape`` (H, W).

    ``masks[i]`` is a boolean crop whose top-left pixel is ``origins[i] = (x0, y0)`` in the image;
    ``truncated[i]``: the mask touches a tile side inside the image (the object may go on beyond it).
    """
    shape: Tuple[int, int]
    bboxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    origins: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    masks: List[np.ndarray] = field(default_factory=list)
    truncated: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    # the image's culture and its probability, from a model with the image-level culture branch
    image_culture: Optional[Tuple[str, float]] = None

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, idx) -> 'Instances':
        """The instances at ``idx`` (indices or a boolean array), in that order."""
        idx = np.arange(len(self))[np.asarray(idx)] if len(self) else np.zeros(0, np.int64)
        return Instances(self.shape, self.bboxes[idx], self.scores[idx], self.labels[idx],
                         self.origins[idx], [self.masks[i] for i in idx], self.truncated[idx])

    @staticmethod
    def concat(parts: Sequence['Instances'], shape: Tuple[int, int]) -> 'Instances':
        parts = [p for p in parts if len(p)]
        if not parts:
            return Instances(shape)
        return Instances(shape, np.concatenate([p.bboxes for p in parts]),
                         np.concatenate([p.scores for p in parts]), np.concatenate([p.labels for p in parts]),
                         np.concatenate([p.origins for p in parts]), [m for p in parts for m in p.masks],
                         np.concatenate([p.truncated for p in parts]))

    def areas(self) -> np.ndarray:
        return np.array([int(m.sum()) for m in self.masks], np.int64)

    def mask_boxes(self) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 of each mask's pixel extent (pixel edges)."""
        if not len(self):
            return np.zeros((0, 4), np.float32)
        hw = np.array([m.shape[::-1] for m in self.masks])
        return np.concatenate([self.origins, self.origins + hw], 1).astype(np.float32)

    def full_mask(self, i: int) -> np.ndarray:
        """Instance ``i`` as a full-image boolean mask (for small images and tests)."""
        out = np.zeros(self.shape, bool)
        x0, y0 = self.origins[i]
        h, w = self.masks[i].shape
        out[y0:y0 + h, x0:x0 + w] = self.masks[i]
        return out


def resolve_overlaps(inst: Instances, kinds: Sequence[str], min_kept: float = 0.5) -> Instances:
    """Make the masks of one kind disjoint; the result is sorted by score (descending).

    Rule: within a kind (cells with cells, nuclei with nuclei; a nucleus may lie inside a cell),
    instances claim pixels in order of (complete before truncated at a tile side, higher score,
    then lower index); a pixel already claimed is removed from later masks; an instance that keeps
    less than ``min_kept`` of its own pixels is a duplicate of those before it and is dropped, the
    rest keep what is left (possibly in several parts). Boxes become the extents of the final masks.
    """
    n = len(inst)
    if n == 0:
        return inst
    order = sorted(range(n), key=lambda i: (bool(inst.truncated[i]), -float(inst.scores[i]), i))
    claimed = {}
    keep, new_masks, new_origins = [], {}, {}
    for i in order:
        kind = kinds[int(inst.labels[i])]
        if kind not in claimed:
            claimed[kind] = np.zeros(inst.shape, bool)
        taken = claimed[kind]
        x0, y0 = (int(v) for v in inst.origins[i])
        m = inst.masks[i]
        h, w = m.shape
        region = taken[y0:y0 + h, x0:x0 + w]
        left = m & ~region
        n_left, n_own = int(left.sum()), int(m.sum())
        if n_own == 0 or n_left < min_kept * n_own:
            continue
        region |= left
        cx0, cy0, crop = tight_crop(left)
        keep.append(i)
        new_masks[i], new_origins[i] = crop, (x0 + cx0, y0 + cy0)
    keep.sort(key=lambda i: (-float(inst.scores[i]), i))
    out = inst.select(np.array(keep, np.int64))
    out.masks = [new_masks[i] for i in keep]
    out.origins = np.array([new_origins[i] for i in keep], np.int64).reshape(-1, 2)
    out.bboxes = out.mask_boxes()
    return out


def label_image(inst: Instances, kinds: Sequence[str], kind: str, ids: Optional[Sequence[int]] = None):
    """Label image of one kind: pixel value = instance id (``ids`` or 1..N); 0 = background.

    uint16 while the largest id fits, uint32 beyond (masks of one kind are disjoint after
    :func:`resolve_overlaps`, so the painting order does not matter).
    """
    ids = list(range(1, len(inst) + 1)) if ids is None else list(ids)
    dtype = np.uint16 if max(ids, default=0) <= np.iinfo(np.uint16).max else np.uint32
    out = np.zeros(inst.shape, dtype)
    for i, inst_id in enumerate(ids):
        if kinds[int(inst.labels[i])] != kind:
            continue
        x0, y0 = inst.origins[i]
        m = inst.masks[i]
        h, w = m.shape
        out[y0:y0 + h, x0:x0 + w][m] = inst_id
    return out


def mask_rle(mask: np.ndarray, x0: int, y0: int, shape: Tuple[int, int]) -> dict:
    """COCO RLE (compressed, JSON-ready) of a cropped mask placed at (x0, y0) in an image of ``shape``,
    computed from the crop alone (no full-image array)."""
    from pycocotools import mask as mask_utils
    height, width = shape
    h, w = mask.shape
    # column-major runs; a zero row above and below each crop column marks where a column's runs end
    col = np.zeros((w, h + 2), np.uint8)
    col[:, 1:-1] = mask.T
    flat = col.ravel()
    change = np.nonzero(flat[1:] != flat[:-1])[0] + 1  # index of the first pixel of each new run
    c, r = change // (h + 2), change % (h + 2)
    pos = (x0 + c) * height + (y0 + r - 1)  # linear (column-major) index in the image
    # a crop as tall as the image: a run ending at a column's foot and one starting at the next
    # column's head meet (a zero-length gap); join them as pycocotools does
    joint = np.nonzero(pos[1:] == pos[:-1])[0]
    pos = np.delete(pos, np.concatenate([joint, joint + 1]))
    bounds = np.concatenate([[0], pos, [height * width]])
    counts = np.diff(bounds).astype(np.int64).tolist()
    if len(counts) > 1 and counts[-1] == 0:  # a mask reaching the last pixel: no closing zero run
        counts.pop()
    rle = mask_utils.frPyObjects(dict(size=[height, width], counts=counts), height, width)
    rle['counts'] = rle['counts'].decode()
    return rle
