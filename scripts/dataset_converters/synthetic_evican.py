"""Synthetic EVICAN: brightfield-like images of one culture each, written in the real release layout.

``scripts/dataset_converters/make_synthetic_evican.py`` calls :func:`make_synthetic_evican`. The output is read by
``scripts/dataset_converters/prepare_evican.py`` exactly like the real release (COCO polygons without bbox/area,
``*Background.jpg`` files in train/val, partially annotated train/val, eval split in three levels).
Optionally (``blurred_background=True``) also the release's background-blurred copies of the partially
annotated train/val images: ``Images/EVICAN_{train,val}2019_BGblurred/`` with the same file names,
every pixel outside the annotated cells blurred (the converter reads them with ``--train-images``).

Cultures differ in morphology (size, elongation, outline irregularity, nucleus/cell ratio, texture,
brightness), drawn from a low-discrepancy design so that any first k cultures are well spread but
neighbours overlap. Eval levels follow EVICAN: 1 separated cells with clear outlines, 2 dense cells
with much contact, 3 low contrast, faint outlines and blur. Same arguments -> byte-identical files.
"""
import json
import os
import os.path as osp
from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

from deepcis_mm.datasets.evican import LEVELS
from deepcis_mm.utils import atomic_save, atomic_write_text

# 30 cell lines, named like real ones (EVICAN60 has 30 cultures; its exact list is not needed here).
CULTURES = ('HeLa', 'MCF-7', 'SW-480', 'C2C12', 'A549', 'HEK-293', 'U2OS', 'NIH-3T3', 'HT-29',
            'Caco-2', 'PC-3', 'LNCaP', 'HepG2', 'MDCK', 'Vero', 'CHO-K1', 'SH-SY5Y', 'BT-474',
            'SK-OV-3', 'HUVEC', 'MRC-5', 'COS-7', 'RAW-264.7', 'L929', '3T3-L1', 'HCT-116', 'U-87-MG',
            'T98G', 'BV-2', 'Huh-7')

# the data of `make demo` (scripts/demo.sh) and of the accuracy benchmark: make_synthetic_evican.py --demo
DEMO_DATA = dict(cultures=CULTURES[:4], n_train=48, n_val=8, n_eval_per_level=10, seed=0)

def _halton(i: int, base: int) -> float:
    f, r = 1.0, 0.0
    while i > 0:
        f /= base
        r += f * (i % base)
        i //= base
    return r


@dataclass(frozen=True)
class Morphology:
    """Look of one culture (lengths in pixels at the default 256 px scale)."""
    radius: float         # mean equivalent cell radius
    elongation: float     # major/minor axis ratio
    irregularity: float   # outline harmonic amplitude
    nucleus_ratio: float  # nucleus radius / cell radius
    texture: float        # cytoplasm granularity amplitude
    grain: float          # granularity scale (blur sigma)
    body: float           # cell body brightness vs background
    nucleus: float        # nucleus brightness vs cytoplasm
    density: float        # cells per 256x256 field


def culture_morphology(index: int) -> Morphology:
    """Morphology of culture ``index`` from a Halton design over the parameter ranges."""
    u = [_halton(index + 1, b) for b in (2, 3, 5, 7, 11, 13, 17, 19)]
    return Morphology(
        radius=9 + 13 * u[0], elongation=1.0 + 1.4 * u[1], irregularity=0.03 + 0.22 * u[2],
        nucleus_ratio=0.3 + 0.3 * u[3], texture=0.02 + 0.1 * u[4], grain=0.6 + 2.0 * u[5],
        body=-0.12 + 0.2 * u[6], nucleus=-0.18 + 0.3 * u[7],
        density=10 + 10 * _halton(index + 1, 23))


def _star_polygon(rng, cx, cy, radius, elong, irregular, angle, n=28) -> np.ndarray:
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 6):
        r += rng.normal(0, irregular / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = radius * np.clip(r, 0.45, 1.8)
    x, y = r * np.cos(theta) * np.sqrt(elong), r * np.sin(theta) / np.sqrt(elong)
    ca, sa = np.cos(angle), np.sin(angle)
    return np.stack([cx + ca * x - sa * y, cy + sa * x + ca * y], 1)


def _area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _smooth_noise(rng, h, w, scale) -> np.ndarray:
    small = rng.standard_normal((max(2, int(h / scale)), max(2, int(w / scale)))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _blur(img, sigma):
    return cv2.GaussianBlur(img, (0, 0), sigma) if sigma > 0.05 else img


def render_image(rng: np.random.Generator, height: int, width: int, morph: Morphology, level: int,
                 annotate_frac: float = 1.0, with_cells: bool = True, region=None):
    """Render one grayscale image; return (uint8 image, list of (cell_poly, nucleus_poly, annotated)).

    level: 1 separated/clear, 2 dense/touching, 3 faint/blurred; 0 = a random mix (train/val).
    region: optional ``f(cx, cy, reach) -> bool``; cells are placed only where it holds (co-cultures).
    """
    if level == 0:
        level = int(rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2]))
    scale = np.sqrt(height * width) / 256.0
    # --- placement ---------------------------------------------------------------------------------
    n_target = int(rng.poisson(morph.density * (1.5 if level == 2 else 1.0) * scale ** 2)) \
        if with_cells else 0
    min_gap = {1: 1.25, 2: 0.7, 3: 1.0}[level]
    cells = []
    tries = 0
    while len(cells) < n_target and tries < 40 * max(n_target, 1):
        tries += 1
        rad = morph.radius * rng.lognormal(0, 0.18)
        cx, cy = rng.uniform(-0.3 * rad, width + 0.3 * rad), rng.uniform(-0.3 * rad, height + 0.3 * rad)
        reach = rad * np.sqrt(morph.elongation)
        if region is not None and not region(cx, cy, reach):
            continue
        if any(np.hypot(cx - x, cy - y) < min_gap * 0.5 * (reach + r2 + rad + q) for x, y, r2, q in
               ((c[0], c[1], c[2], c[3]) for c in cells)):
            continue
        cells.append((cx, cy, rad, reach))
    # --- shapes ------------------------------------------------------------------------------------
    box = np.array([width - 1e-3, height - 1e-3])
    objects = []
    for cx, cy, rad, _ in cells:
        angle = rng.uniform(0, np.pi)
        cell = _star_polygon(rng, cx, cy, rad, morph.elongation, morph.irregularity, angle)
        nr = rad * morph.nucleus_ratio * rng.lognormal(0, 0.08)
        nuc = None
        for shrink in (0.25, 0.12, 0.0):  # keep the nucleus inside its cell
            off = rng.normal(0, shrink * rad, 2)
            cand = _star_polygon(rng, cx + off[0], cy + off[1], nr, 1 + 0.3 * (morph.elongation - 1),
                                 morph.irregularity * 0.4, angle + rng.normal(0, 0.3), n=20)
            c32 = cell.astype(np.float32).reshape(-1, 1, 2)
            if all(cv2.pointPolygonTest(c32, (float(px), float(py)), False) > 0 for px, py in cand):
                nuc = cand
                break
        annotated = bool(rng.random() < annotate_frac)
        cell = np.clip(cell, 0, box)
        if _area(cell) < 30:  # (almost) outside the image: no object, not a degenerate polygon
            continue
        if nuc is not None:
            nuc = np.clip(nuc, 0, box)
            nuc = nuc if _area(nuc) >= 8 else None
        objects.append((cell, nuc, annotated))
    # --- rendering ---------------------------------------------------------------------------------
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    bg = 0.55 + rng.uniform(-0.08, 0.08) \
        + rng.uniform(-0.12, 0.12) * (xx / width - 0.5) + rng.uniform(-0.12, 0.12) * (yy / height - 0.5) \
        - rng.uniform(0.0, 0.15) * (((xx / width - 0.5) ** 2 + (yy / height - 0.5) ** 2) * 2) \
        + 0.02 * _smooth_noise(rng, height, width, 32 * scale)
    labels = np.zeros((height, width), np.int32)
    nuclei = np.zeros((height, width), np.uint8)
    for i, (cell, nuc, _) in enumerate(objects):
        cv2.fillPoly(labels, [np.round(cell).astype(np.int32)], i + 1)
    for cell, nuc, _ in objects:
        if nuc is not None:
            cv2.fillPoly(nuclei, [np.round(nuc).astype(np.int32)], 1)
    cellmask = (labels > 0).astype(np.float32)
    nucmask = nuclei.astype(np.float32) * cellmask
    contrast = {1: 1.0, 2: 0.9, 3: 0.35}[level]
    grains = _blur(rng.standard_normal((height, width)).astype(np.float32), morph.grain * scale)
    grains /= grains.std() + 1e-6
    signal = morph.body * _blur(cellmask, 1.0) + morph.texture * grains * cellmask \
        + morph.nucleus * _blur(nucmask, 0.8)
    # phase-contrast halo: bright just outside each outline, dark just inside; dark cell-cell borders
    halo = _blur(cellmask, 3.0 * scale) - _blur(cellmask, 1.0)
    k = np.ones((3, 3), np.uint8)
    border = (cv2.dilate(labels.astype(np.float32), k) != cv2.erode(labels.astype(np.float32), k))
    edges = _blur(border.astype(np.float32) * cellmask, 0.7)
    halo_strength = rng.uniform(0.5, 0.9)
    signal += halo_strength * halo - 0.12 * edges
    img = bg + contrast * signal
    img = _blur(img, {1: rng.uniform(0, 0.5), 2: rng.uniform(0, 0.7), 3: rng.uniform(1.4, 2.4)}[level])
    img += rng.normal(0, {1: 0.015, 2: 0.02, 3: 0.035}[level], img.shape).astype(np.float32)
    img8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return img8, objects


def blur_unannotated(img: np.ndarray, polygons: Sequence[np.ndarray], sigma: float) -> np.ndarray:
    """The release's background-blurred copy of a partially annotated image: Gaussian blur (``sigma``)
    everywhere except on the annotated objects (``polygons``, x/y arrays), which keep their pixels; the
    kept area is the filled polygons grown by 2 px so that any rasterization of them stays sharp."""
    keep = np.zeros(img.shape[:2], np.uint8)
    for poly in polygons:
        cv2.fillPoly(keep, [np.round(poly).astype(np.int32)], 1)
    keep = cv2.dilate(keep, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))).astype(bool)
    out = _blur(img.astype(np.float32), sigma)
    out = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    out[keep] = img[keep]
    return out


COCULTURE_LAYOUTS = ('halves', 'quadrants')


def render_coculture(rng: np.random.Generator, height: int, width: int, morphs: Sequence[Morphology],
                     level: int, layout: str = 'halves'):
    """Two cultures in one field: culture 0 in some regions, culture 1 in the others ('halves': left
    and right; 'quadrants': a 2x2 checkerboard), with a soft seam and no cell cut by it.

    Returns (uint8 image, list of (culture slot 0/1, cell_poly, nucleus_poly, annotated)).
    """
    if layout not in COCULTURE_LAYOUTS:
        raise ValueError(f'render_coculture: layout must be one of {COCULTURE_LAYOUTS}, got {layout!r}')
    quad = layout == 'quadrants'

    def side(x, y):  # True: culture 0
        return (x < width / 2) == (y < height / 2) if quad else x < width / 2

    def seam_dist(x, y):
        d = np.abs(x - width / 2)
        return np.minimum(d, np.abs(y - height / 2)) if quad else d

    images, objects = [], []
    for slot, morph in enumerate(morphs[:2]):
        # keep cells clear of the seam (an outline reaches ~1.2x its mean reach; the rare longer one fades)
        region = (lambda cx, cy, reach, s=slot: bool(side(cx, cy)) == (s == 0) and
                  seam_dist(cx, cy) > 1.2 * reach + 3)
        img, objs = render_image(rng, height, width, morph, level, region=region)
        images.append(img.astype(np.float32))
        objects += [(slot, cell, nuc, ann) for cell, nuc, ann in objs]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    alpha = _blur(side(xx, yy).astype(np.float32), 3.0)
    img = alpha * images[0] + (1 - alpha) * images[1]
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), objects


def _poly_json(poly: np.ndarray) -> list:
    return [round(float(v), 2) for v in poly.ravel()]


def _write_jpg(path: str, img: np.ndarray) -> None:
    atomic_save(path, lambda tmp: cv2.imwrite(tmp, img, [cv2.IMWRITE_JPEG_QUALITY, 92]) or
                (_ for _ in ()).throw(IOError(f'{path}: cv2.imwrite failed')))


def make_synthetic_evican(out_dir: str, cultures: Sequence[str] = CULTURES[:4], n_train: int = 48,
                          n_val: int = 8, n_eval_per_level: int = 6, size: int = 256,
                          eval_size_range: Optional[Sequence[int]] = None, seed: int = 0,
                          annotate_frac: float = 0.8, variant: str = 'EVICAN60',
                          blurred_background: bool = False, blur_sigma: float = 6.0, n_coculture: int = 0,
                          coculture_name: str = 'coculture') -> dict:
    """Write a synthetic release under ``out_dir``; return counts.

    Args:
        cultures: culture names (any names; the first ones of :data:`CULTURES` by default).
        n_train, n_val: images per split (cultures round-robin). n_eval_per_level: eval images per level.
        size: train/val image side. eval_size_range: (min, max) eval side, default (0.6, 1.3) x size.
        annotate_frac: fraction of cells annotated in train/val (EVICAN is partially annotated), each
            cell drawn independently; the images do not depend on it, and eval is always fully annotated.
        variant: 'EVICAN60' (culture x kind categories) or 'EVICAN2' (Cell=1, Nucleus=2).
        blurred_background: also write the release's background-blurred copies of the train/val images
            (``Images/EVICAN_{train,val}2019_BGblurred/``, same file names; nothing else changes).
        blur_sigma: their Gaussian blur (px at 256 px image side, scaled with ``size``).
        n_coculture: co-culture eval images (two cultures per field, :func:`render_coculture`), written
            as an extra eval subset ``instances_eval2019_<coculture_name>_<variant>.json`` with images
            in EVICAN_eval2019 (levels 1-3 round-robin, tagged ``difficulty``). 0 (default): none,
            and every other file is byte-identical to a run without the option.
    """
    if not 0.0 <= annotate_frac <= 1.0:
        raise ValueError(f'make_synthetic_evican: annotate_frac must be in [0, 1], got {annotate_frac}')
    if not cultures:
        raise ValueError('make_synthetic_evican: at least one culture is needed')
    lo, hi = eval_size_range or (int(0.6 * size), int(1.3 * size))
    morph = {c: culture_morphology(CULTURES.index(c) if c in CULTURES else 30 + i)
             for i, c in enumerate(cultures)}
    if variant == 'EVICAN60':
        categories = []
        for i, c in enumerate(cultures):
            categories += [dict(id=2 * i + 1, name=f'{c}_Cell', supercategory='Cell'),
                           dict(id=2 * i + 2, name=f'{c}_Nucleus', supercategory='Nucleus')]
        cat_of = {c: (2 * i + 1, 2 * i + 2) for i, c in enumerate(cultures)}
    elif variant == 'EVICAN2':
        categories = [dict(id=1, name='Cell', supercategory='Cell'),
                      dict(id=2, name='Nucleus', supercategory='Nucleus')]
        cat_of = {c: (1, 2) for c in cultures}
    else:
        raise ValueError(f'make_synthetic_evican: unknown variant {variant!r}')

    img_root = osp.join(out_dir, 'Images')
    counts = {}

    def write_split(json_name, folder, items, blurred_folder=None):
        """items: list of (file_name, culture, level, h, w, annotate_frac, seed tuple)."""
        os.makedirs(osp.join(img_root, folder), exist_ok=True)
        if blurred_folder:
            os.makedirs(osp.join(img_root, blurred_folder), exist_ok=True)
        images, anns = [], []
        for img_id, (fname, culture, level, h, w, frac, key) in enumerate(items, 1):
            rng = np.random.default_rng(key)
            img, objects = render_image(rng, h, w, morph[culture], level, frac)
            _write_jpg(osp.join(img_root, folder, fname), img)
            if blurred_folder:
                kept = [cell for cell, _, annotated in objects if annotated]
                _write_jpg(osp.join(img_root, blurred_folder, fname),
                           blur_unannotated(img, kept, blur_sigma * np.sqrt(h * w) / 256.0))
            images.append(dict(id=img_id, file_name=fname, width=w, height=h))
            for cell, nuc, annotated in objects:
                if not annotated:
                    continue
                anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=cat_of[culture][0],
                                 segmentation=[_poly_json(cell)], iscrowd=0))
                if nuc is not None:
                    anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=cat_of[culture][1],
                                     segmentation=[_poly_json(nuc)], iscrowd=0))
        coco = dict(info=dict(description=f'synthetic {variant} (deepcis_mm)'), images=images,
                    annotations=anns, categories=categories)
        atomic_write_text(osp.join(out_dir, json_name), json.dumps(coco))
        counts[json_name] = dict(images=len(images), annotations=len(anns))

    for split, n, code in (('train', n_train, 1), ('val', n_val, 2)):
        items = [(f'{cultures[i % len(cultures)]}_{i:04d}.jpg', cultures[i % len(cultures)], 0,
                  size, size, annotate_frac, (seed, code, i)) for i in range(n)]
        write_split(f'instances_{split}2019_{variant}.json', f'EVICAN_{split}2019', items,
                    f'EVICAN_{split}2019_BGblurred' if blurred_background else None)
        for j, c in enumerate(cultures):  # unannotated background frames, as in the release
            rng = np.random.default_rng((seed, code, 10 ** 6 + j))
            bg, _ = render_image(rng, size, size, morph[c], 1, with_cells=False)
            _write_jpg(osp.join(img_root, f'EVICAN_{split}2019', f'{c}_Background.jpg'), bg)
    index = 1
    for level, name in LEVELS.items():
        items = []
        for i in range(n_eval_per_level):
            c = cultures[(i + level) % len(cultures)]
            rng = np.random.default_rng((seed, 3, level, i))
            h, w = (int(v) for v in rng.integers(lo, hi + 1, 2))
            items.append((f'{index}_{c}.jpg', c, level, h, w, 1.0, (seed, 4, level, i)))
            index += 1
        write_split(f'instances_eval2019_{name}_{variant}.json', 'EVICAN_eval2019', items)
    if n_coculture > 0:
        if len(cultures) < 2:
            raise ValueError('make_synthetic_evican: co-culture images need at least two cultures')
        if coculture_name in LEVELS.values() or not coculture_name.replace('-', '').isalnum():
            raise ValueError(f'make_synthetic_evican: bad co-culture subset name {coculture_name!r}')
        images, anns = [], []
        n_c = len(cultures)
        for i in range(n_coculture):
            pair = (cultures[i % n_c], cultures[(i + 1 + i // n_c) % n_c])
            if pair[0] == pair[1]:
                pair = (pair[0], cultures[(i + 1) % n_c])
            level, layout = 1 + i % 3, COCULTURE_LAYOUTS[(i // 3) % 2]
            h, w = (int(v) for v in np.random.default_rng((seed, 5, i)).integers(lo, hi + 1, 2))
            img, objects = render_coculture(np.random.default_rng((seed, 6, i)), h, w,
                                            [morph[c] for c in pair], level, layout)
            fname = f'coculture_{i + 1}_{pair[0]}_{pair[1]}.jpg'
            _write_jpg(osp.join(img_root, 'EVICAN_eval2019', fname), img)
            images.append(dict(id=i + 1, file_name=fname, width=w, height=h, difficulty=level,
                               layout=layout, cultures=list(pair)))
            for slot, cell, nuc, _ in objects:
                anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=cat_of[pair[slot]][0],
                                 segmentation=[_poly_json(cell)], iscrowd=0))
                if nuc is not None:
                    anns.append(dict(id=len(anns) + 1, image_id=i + 1, category_id=cat_of[pair[slot]][1],
                                     segmentation=[_poly_json(nuc)], iscrowd=0))
        json_name = f'instances_eval2019_{coculture_name}_{variant}.json'
        coco = dict(info=dict(description=f'synthetic {variant} co-cultures (deepcis_mm)'), images=images,
                    annotations=anns, categories=categories)
        atomic_write_text(osp.join(out_dir, json_name), json.dumps(coco))
        counts[json_name] = dict(images=len(images), annotations=len(anns))
    return counts


__all__ = ['CULTURES', 'COCULTURE_LAYOUTS', 'Morphology', 'culture_morphology', 'render_coculture', 'render_image',
           'make_synthetic_evican', 'blur_unannotated']
