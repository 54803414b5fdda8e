"""Tiling: where the tiles of a large image lie, which tile owns a detection, and how the config's
per-image caps scale with the tile area. Used by the :class:`~.predictor.Predictor` and
:func:`~.predict_files.predict_files` (its progress bar counts tiles)."""
import math
from typing import List, Tuple

import numpy as np
from mmengine.config import Config

# test-pipeline steps that resize (replaced by the predictor's fixed-factor resize)
RESIZES = ('Resize', 'RandomResize', 'RandomChoiceResize', 'FixShapeResize', 'ResizeShortestEdge')


def tile_origins(length: int, tile: int, overlap: int) -> List[int]:
    """Tile start positions covering [0, length) with at least ``overlap`` px shared by neighbours."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def core_cuts(starts: List[int], tile: int, length: int) -> List[float]:
    """Borders of the tiles' cores along one axis: the middle of each overlap, 0 and ``length``."""
    return [0.0] + [(a + tile + b) / 2 for a, b in zip(starts, starts[1:])] + [float(length)]


def tile_px(tile_size: int, tile_overlap: int, scale: float) -> Tuple[int, int]:
    """(tile side, overlap) in image pixels for a tile side and overlap in model-input pixels and
    ``scale`` model-input pixels per image pixel."""
    t = max(32, int(round(tile_size / scale)))
    return t, min(t - 1, int(round(tile_overlap / scale)))


def image_tiles(height: int, width: int, tile: int, overlap: int) -> List[Tuple[int, int, int, int]]:
    """(y0, x0, h, w) of every tile of an image (``tile``, ``overlap`` in image pixels, as
    :func:`tile_px` gives them); one tile when the image fits."""
    ys, xs = tile_origins(height, tile, overlap), tile_origins(width, tile, overlap)
    return [(y0, x0, min(tile, height), min(tile, width)) for y0 in ys for x0 in xs]


def tile_cores(tiles: List[Tuple[int, int, int, int]], tile: int, height: int, width: int
               ) -> List[Tuple[float, float, float, float]]:
    """(x_lo, x_hi, y_lo, y_hi) of each tile's core in image pixels: the middles of the overlaps cut
    the image into one core per tile, so the cores partition the image."""
    ys = sorted({y for y, _, _, _ in tiles})
    xs = sorted({x for _, x, _, _ in tiles})
    ycuts, xcuts = core_cuts(ys, tile, height), core_cuts(xs, tile, width)
    cores = []
    for y0, x0, _, _ in tiles:
        iy, ix = ys.index(y0), xs.index(x0)
        cores.append((xcuts[ix], xcuts[ix + 1], ycuts[iy], ycuts[iy + 1]))
    return cores


def owned_by_tile(boxes: np.ndarray, x0: int, y0: int, core: Tuple[float, float, float, float]) -> np.ndarray:
    """Which of a tile's detections it keeps: those whose box (x1, y1, x2, y2 in tile coordinates,
    the tile at ``x0``, ``y0``) has its centre in the tile's core. Each centre lies in exactly one
    core, so an object crossing a tile border is kept once."""
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2 + x0, (boxes[:, 1] + boxes[:, 3]) / 2 + y0
    x_lo, x_hi, y_lo, y_hi = core
    return (cx >= x_lo) & (cx < x_hi) & (cy >= y_lo) & (cy < y_hi)


def model_input_side(cfg: Config) -> int:
    """Default tile side: the longest side the config's test ``Resize`` feeds the model (at most 1024
    px, a multiple of 32); 1024 when the test pipeline has no resize with a fixed scale."""
    from mmdet.utils import get_test_pipeline_cfg
    try:
        pipeline = get_test_pipeline_cfg(cfg)
    except Exception:
        pipeline = []
    for step in pipeline:
        if str(step.get('type', '')).split('.')[-1] in RESIZES and step.get('scale') is not None:
            scale = step['scale']
            side = max(scale) if isinstance(scale, (tuple, list)) else int(scale)
            return int(max(32, min(1024, side)) // 32 * 32)
    return 1024


def scale_detection_budget(cfg: Config, input_side: float) -> None:
    """Raise the per-image proposal and detection caps (``nms_pre``, ``max_per_img`` of the test_cfg and
    its ``rpn``/``rcnn`` parts) in proportion to the model-input area of one tile over the area they
    were set for (the short side of the config's test ``Resize`` squared), so that a dense tile or a
    whole large image is not cut at the count a small training image needed (in place)."""
    from mmdet.utils import get_test_pipeline_cfg
    ref = None
    try:
        for step in get_test_pipeline_cfg(cfg):
            if str(step.get('type', '')).split('.')[-1] in RESIZES and step.get('scale') is not None:
                sc = step['scale']
                ref = min(sc) if isinstance(sc, (tuple, list)) else int(sc)
                break
    except Exception:
        pass
    factor = max(1.0, (input_side / ref) ** 2) if ref else 1.0
    test_cfg = cfg.model.get('test_cfg') or {}
    for part in (test_cfg, test_cfg.get('rpn'), test_cfg.get('rcnn')):
        if isinstance(part, dict):
            for key in ('nms_pre', 'max_per_img'):
                if isinstance(part.get(key), int) and part[key] > 0:
                    part[key] = int(math.ceil(part[key] * factor))
