"""Inference for users: images in (any of JPEG/PNG/TIFF, 8/16 bit, gray/RGB), instances out.

:class:`Predictor` runs a trained config + checkpoint, with tiled inference for large images and
optional image-level culture consensus; :func:`write_outputs` writes overlays, label images, GeoJSON,
and the rows for the per-instance CSV and COCO files (``deepcis predict``, ``scripts/predict.py``).
"""
import glob
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.structures import InstanceData

from ..datasets.categories import parse_category
from ..datasets.evican import culture_palette
from ..datasets.transforms import normalize_intensity
from ..engine.checkpoint_fit import CheckpointMismatch, init_detector_strict
from ..engine.cpu_fallback import apply_cpu_fallback
from ..models.culture_consensus import apply_culture_consensus
from ..utils import atomic_save, atomic_write_text
from .morphology import link_nuclei, mask_polygon, measure

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp')


class InputError(ValueError):
    """Bad user input (file, folder, config, checkpoint); the message names it."""


def list_inputs(spec: str) -> List[str]:
    """One image, every image of a folder, or a glob pattern -> sorted paths."""
    if osp.isfile(spec):
        return [spec]
    if osp.isdir(spec):
        paths = [osp.join(spec, n) for n in sorted(os.listdir(spec)) if n.lower().endswith(IMAGE_EXTS)]
    else:
        paths = sorted(p for p in glob.glob(spec) if p.lower().endswith(IMAGE_EXTS))
    if not paths:
        raise InputError(f'{spec}: no images ({", ".join(IMAGE_EXTS)}) found')
    return paths


def read_image(path: str) -> np.ndarray:
    """Any gray/RGB(A), 8/16-bit or float image -> uint8 BGR exactly as the training pipeline sees it
    (:func:`~deepcis_mm.datasets.normalize_intensity`: 8-bit unchanged, 16-bit its high byte)."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f'{path}: unreadable image')
    try:
        return normalize_intensity(img, path)
    except ValueError as e:
        raise InputError(str(e)) from None


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


class Predictor:
    """Config + checkpoint -> per-image instances (masks, boxes, scores, labels) as numpy arrays.

    Args:
        config, checkpoint: a DeepCIS (or mmdet) config and its trained weights; a checkpoint that
            does not fit the config is an error.
        device: 'cpu' or 'cuda[:N]'. score_thr: keep detections scoring at least this.
        consensus: image-level culture consensus (one culture per image; off for co-cultures).
        tile_size, tile_overlap: images with a side above ``tile_size`` are predicted in overlapping
            tiles; the middles of the overlaps cut the image into one core per tile, and an object is
            kept from the tile whose core holds its box centre, so an object crossing a tile border
            appears once (objects should be smaller than the overlap).
    """

    def __init__(self, config: str, checkpoint: str, device: str = 'cpu', score_thr: float = 0.3,
                 consensus: bool = False, tile_size: int = 1024, tile_overlap: int = 128):
        for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise InputError(f'{path}: {what} file not found')
        cfg = Config.fromfile(config)
        if not str(device).startswith('cuda'):
            apply_cpu_fallback(cfg, force=True)
        cfg.model.setdefault('backbone', {})['init_cfg'] = None  # weights come from the checkpoint
        rcnn_test = (cfg.model.get('test_cfg') or {}).get('rcnn')
        if rcnn_test is not None and 'culture_consensus' in rcnn_test:
            rcnn_test['culture_consensus'] = False  # applied below from the checkpoint's class names
        try:  # strict: a checkpoint of another config is an error naming the first misfit tensor
            model, ckpt = init_detector_strict(cfg, checkpoint, config, device)
        except CheckpointMismatch as e:
            raise InputError(str(e)) from None
        meta = (ckpt.get('meta') or {}).get('dataset_meta') or {}
        classes = list(meta.get('classes') or [])
        if not classes:
            raise InputError(f'{checkpoint}: no class names in its meta (train it with tools/train.py)')
        self.model, self.cfg, self.classes = model.eval(), cfg, classes
        parsed = [parse_category(c) or (c, 'cell') for c in classes]
        self.cultures = [p[0] or c for p, c in zip(parsed, classes)]
        self.kinds = [p[1] for p in parsed]
        self.palette = culture_palette([dict(culture=c, kind=k) for c, k in zip(self.cultures, self.kinds)])
        self.score_thr, self.consensus = score_thr, consensus
        self.tile_size, self.tile_overlap = tile_size, tile_overlap
        self.nms_cfg = (cfg.model.get('test_cfg') or {}).get('rcnn', {}).get('nms') or \
            dict(type='nms', iou_threshold=0.5)

    def _infer(self, imgs: Sequence[np.ndarray]) -> List[InstanceData]:
        from mmdet.apis import inference_detector
        with torch.no_grad():
            outs = inference_detector(self.model, list(imgs))
        res = []
        for out in outs:
            inst = out.pred_instances
            res.append(inst[inst.scores >= self.score_thr].cpu())
        return res

    def _infer_tiled(self, img: np.ndarray) -> InstanceData:
        h, w = img.shape[:2]
        t, ov = self.tile_size, self.tile_overlap
        ys, xs = tile_origins(h, t, ov), tile_origins(w, t, ov)
        ycuts, xcuts = core_cuts(ys, t, h), core_cuts(xs, t, w)
        parts = []
        for iy, y0 in enumerate(ys):
            for ix, x0 in enumerate(xs):
                tile = img[y0:y0 + t, x0:x0 + t]
                inst = self._infer([tile])[0]
                th, tw = tile.shape[:2]
                # the cores partition the image: each box centre belongs to exactly one tile
                cx0, cx1, cy0, cy1 = xcuts[ix], xcuts[ix + 1], ycuts[iy], ycuts[iy + 1]
                boxes = inst.bboxes + torch.tensor([x0, y0, x0, y0], dtype=inst.bboxes.dtype)
                ctr_x, ctr_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
                keep = (ctr_x >= cx0) & (ctr_x < cx1) & (ctr_y >= cy0) & (ctr_y < cy1)
                for i in torch.nonzero(keep).flatten().tolist():
                    full = torch.zeros((h, w), dtype=torch.bool)
                    full[y0:y0 + th, x0:x0 + tw] = inst.masks[i].bool()
                    parts.append((boxes[i], inst.scores[i], inst.labels[i], full))
        if not parts:
            return InstanceData(bboxes=torch.zeros((0, 4)), scores=torch.zeros(0),
                                labels=torch.zeros(0, dtype=torch.long), masks=torch.zeros((0, h, w), dtype=torch.bool))
        b, s, lab, m = zip(*parts)
        return InstanceData(bboxes=torch.stack(b), scores=torch.stack(s), labels=torch.stack(lab),
                            masks=torch.stack(m))

    def predict(self, imgs: Sequence[np.ndarray]) -> List[Dict[str, np.ndarray]]:
        """Predict a batch of uint8 BGR images (tiled where large); arrays per image, by score."""
        small = [i for i, im in enumerate(imgs) if max(im.shape[:2]) <= self.tile_size]
        results: List[Optional[InstanceData]] = [None] * len(imgs)
        if small:
            for i, inst in zip(small, self._infer([imgs[i] for i in small])):
                results[i] = inst
        for i, im in enumerate(imgs):
            if results[i] is None:
                results[i] = self._infer_tiled(im)
        out = []
        for inst in results:
            if self.consensus:
                inst = apply_culture_consensus(inst, dict(label_cultures=self.cultures,
                                                          label_kinds=self.kinds), self.nms_cfg)
            order = torch.argsort(inst.scores, descending=True)
            inst = inst[order]
            out.append(dict(bboxes=inst.bboxes.numpy(), scores=inst.scores.numpy(),
                            labels=inst.labels.numpy(), masks=inst.masks.numpy().astype(bool)))
        return out


def instance_rows(image_name: str, res: Dict[str, np.ndarray], classes, cultures, kinds) -> List[dict]:
    """Per-instance table rows: identity, score, box, morphology, nucleus -> cell link and ratios."""
    n = len(res['scores'])
    cells = [i for i in range(n) if kinds[res['labels'][i]] == 'cell']
    nuclei = [i for i in range(n) if kinds[res['labels'][i]] == 'nucleus']
    parents = link_nuclei([res['masks'][i] for i in nuclei], [res['masks'][i] for i in cells])
    parent_of = {nuc: (cells[p] + 1 if p is not None else None) for nuc, p in zip(nuclei, parents)}
    rows = []
    for i in range(n):
        lab = int(res['labels'][i])
        x1, y1, x2, y2 = (float(v) for v in res['bboxes'][i])
        row = dict(image=image_name, instance_id=i + 1, kind=kinds[lab], culture=cultures[lab],
                   cls=classes[lab], score=float(res['scores'][i]), bbox_x=x1, bbox_y=y1, bbox_w=x2 - x1,
                   bbox_h=y2 - y1)
        row.update(measure(res['masks'][i]))
        row['parent_cell_id'] = parent_of.get(i)
        row['nucleus_cell_area_ratio'] = None
        rows.append(row)
    for i in cells:
        kids = [nuc for nuc, p in parent_of.items() if p == i + 1]
        if kids and rows[i]['area']:
            rows[i]['nucleus_cell_area_ratio'] = sum(rows[k]['area'] for k in kids) / rows[i]['area']
    return rows


def label_image(res: Dict[str, np.ndarray], kinds, kind: str) -> np.ndarray:
    """uint16 label image of one kind: pixel value = instance id (higher scores painted last, on top)."""
    h, w = res['masks'].shape[1:] if len(res['masks']) else (0, 0)
    out = np.zeros((h, w), np.uint16)
    for i in reversed(range(len(res['scores']))):
        if kinds[int(res['labels'][i])] == kind:
            out[res['masks'][i]] = i + 1
    return out


def geojson(rows: List[dict], res: Dict[str, np.ndarray], palette) -> dict:
    """QuPath-importable FeatureCollection: one polygon per instance, class name as classification."""
    feats = []
    for row, mask, lab in zip(rows, res['masks'], res['labels']):
        ring = mask_polygon(mask)
        if ring is None:
            continue
        r, g, b = palette[int(lab)]
        feats.append(dict(type='Feature', geometry=dict(type='Polygon', coordinates=[ring]), properties=dict(
            objectType='detection', name=f'{row["cls"]} {row["instance_id"]}',
            classification=dict(name=row['cls'], color=[r, g, b]),
            measurements={k: row[k] for k in ('score', 'area', 'perimeter', 'equivalent_diameter',
                                                'eccentricity', 'solidity') if row[k] is not None})))
    return dict(type='FeatureCollection', features=feats)


def overlay(img: np.ndarray, res: Dict[str, np.ndarray], classes, palette, caption: str = '') -> np.ndarray:
    """Masks coloured per class (a culture's cell and nucleus share a hue), outlines, legend, caption."""
    out = img.copy()
    color = np.zeros_like(out)
    for i in reversed(range(len(res['scores']))):
        r, g, b = palette[int(res['labels'][i])]
        color[res['masks'][i]] = (b, g, r)
    painted = color.any(-1)
    out[painted] = (0.55 * out[painted] + 0.45 * color[painted]).astype(np.uint8)
    for i in range(len(res['scores'])):
        r, g, b = palette[int(res['labels'][i])]
        cs, _ = cv2.findContours(res['masks'][i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, cs, -1, (b, g, r), 1)
    present = sorted({int(v) for v in res['labels']})
    pad = 16 * (len(present) + 1) + (18 if caption else 0)
    canvas = np.full((out.shape[0] + pad, max(out.shape[1], 260), 3), 255, np.uint8)
    canvas[:out.shape[0], :out.shape[1]] = out
    y = out.shape[0] + 14
    for lab in present:
        r, g, b = palette[lab]
        cv2.rectangle(canvas, (4, y - 10), (16, y), (b, g, r), -1)
        n = int((res['labels'] == lab).sum())
        cv2.putText(canvas, f'{classes[lab]} ({n})', (22, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        y += 16
    if caption:
        cv2.putText(canvas, caption, (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return canvas


def write_image_outputs(out_dir: str, stem: str, img, res, rows, classes, kinds, palette, caption='') -> None:
    """Per-image files: overlay PNG, 16-bit label PNG per kind, GeoJSON (each written atomically)."""
    import json
    atomic_save(osp.join(out_dir, 'overlays', f'{stem}.png'),
                lambda t: cv2.imwrite(t, overlay(img, res, classes, palette, caption)))
    for kind in sorted(set(kinds)):
        lab = label_image(res, kinds, kind) if len(res['scores']) else np.zeros(img.shape[:2], np.uint16)
        atomic_save(osp.join(out_dir, 'labels', f'{stem}_{kind}.png'), lambda t, a=lab: cv2.imwrite(t, a))
    atomic_write_text(osp.join(out_dir, 'geojson', f'{stem}.geojson'), json.dumps(geojson(rows, res, palette)))
