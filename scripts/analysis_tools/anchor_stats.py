"""Instance size / aspect-ratio statistics and the anchors they suggest (how the paper chose its anchors)."""
import json
from typing import Dict, List, Sequence

import numpy as np


def instance_shapes(coco_files: Sequence[str]) -> Dict[str, np.ndarray]:
    """Per kind, an (N, 3) array of bbox width, height and mask area from normalized COCO files."""
    out: Dict[str, List] = {}
    for path in coco_files:
        with open(path) as f:
            data = json.load(f)
        for c in data['categories']:
            if 'kind' not in c:
                raise ValueError(f'{path}: category {c.get("name")!r} has no "kind": '
                                 f'prepare the release with scripts/dataset_converters/prepare_evican.py first')
        kind = {c['id']: c['kind'] for c in data['categories']}
        for a in data['annotations']:
            out.setdefault(kind[a['category_id']], []).append((a['bbox'][2], a['bbox'][3], a['area']))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def shape_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of boxes and anchors with the same centre: (N, 2) x (M, 2) -> (N, M)."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(wh[:, None, 1], anchors[None, :, 1])
    union = wh[:, None].prod(-1) + anchors[None].prod(-1) - inter
    return inter / union


def anchor_shapes(sizes: Sequence[float], ratios: Sequence[float]) -> np.ndarray:
    """(w, h) of anchors of area size**2 and ratio h/w (mmdet/detectron2 convention)."""
    return np.array([(s / np.sqrt(r), s * np.sqrt(r)) for s in sizes for r in ratios])


def coverage(wh: np.ndarray, sizes, ratios, thr: float = 0.5) -> float:
    """Fraction of boxes whose best anchor shape has IoU >= thr (centre-aligned)."""
    if len(wh) == 0:
        return float('nan')
    return float((shape_iou(wh, anchor_shapes(sizes, ratios)).max(1) >= thr).mean())


def suggest_anchors(wh: np.ndarray, n_sizes: int = 9) -> dict:
    """Sizes: geometric steps from the 1st to the 99th percentile of sqrt(w*h) (like the paper's lists);
    ratios: h/w percentiles (2, 25, 50, 75, 98) snapped to powers of 2."""
    side = np.sqrt(wh[:, 0] * wh[:, 1])
    lo, hi = np.percentile(side, [1, 99])
    sizes = sorted({int(round(v)) for v in np.geomspace(max(lo, 1.0), max(hi, lo, 1.0), n_sizes)})
    log_r = np.log2(wh[:, 1] / wh[:, 0])
    snapped = np.round(np.quantile(log_r, [0.02, 0.25, 0.5, 0.75, 0.98]))
    ratios = sorted({float(2.0 ** v) for v in snapped} | {1.0})
    return dict(sizes=sizes, ratios=ratios)


def anchor_report(shapes: Dict[str, np.ndarray], paper_sizes: Dict[str, Sequence[int]],
                  paper_ratios: Sequence[float]) -> dict:
    """Per kind: size/ratio percentiles, suggested anchors and coverage of suggested vs paper anchors."""
    report = {}
    for kind, arr in sorted(shapes.items()):
        wh = arr[:, :2]
        side = np.sqrt(arr[:, 2])
        ratio = wh[:, 1] / wh[:, 0]
        sug = suggest_anchors(wh)
        paper = paper_sizes.get(kind, ())
        report[kind] = dict(
            n=int(len(arr)),
            sqrt_area_percentiles={p: float(np.percentile(side, p)) for p in (1, 5, 25, 50, 75, 95, 99)},
            aspect_ratio_percentiles={p: float(np.percentile(ratio, p)) for p in (1, 5, 25, 50, 75, 95, 99)},
            suggested=sug,
            coverage_suggested=coverage(wh, sug['sizes'], sug['ratios']),
            paper=dict(sizes=list(paper), ratios=list(paper_ratios)),
            coverage_paper=coverage(wh, paper, paper_ratios) if paper else None)
    return report
