"""Convert the official EVICAN release layout into normalized COCO files (``scripts/dataset_converters/prepare_evican.py``).

Release layout (EVICAN60, or EVICAN2 with categories Cell/Nucleus)::

    SRC/instances_{train2019,val2019}_EVICAN60.json
    SRC/instances_eval2019_{easy,medium,difficult}_EVICAN60.json
    SRC/Images/EVICAN_{train,val,eval}2019/*.jpg     (+ *Background.jpg in train/val: not annotated)

Annotation files and image folders are found anywhere below SRC. Output::

    DST/annotations/instances_{train,val,eval}.json   normalized COCO (bbox, area, culture, kind,
                                                      eval images tagged difficulty 1/2/3)
    DST/images/{train,val,eval} -> source image folders (symlinks)
    DST/summary.json, DST/summary.md                  images/instances per class, split and level
"""
import json
import logging
import os
import os.path as osp
import re
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from deepcis_mm.utils import atomic_write_json, atomic_write_text, markdown_table
from deepcis_mm.datasets.categories import class_name, parse_categories
from deepcis_mm.datasets.evican import LEVELS

logger = logging.getLogger('deepcis.prepare')

IMAGE_DIRS = {'train': 'EVICAN_train2019', 'val': 'EVICAN_val2019', 'eval': 'EVICAN_eval2019'}
LEVEL_CODES = {name: code for code, name in LEVELS.items()}  # 'easy' -> 1 (the eval file names)


class ReleaseError(ValueError):
    """A problem in the release data; the message names the file and the cause on one line."""


def ann_file_names(variant: str) -> Dict[str, List[Tuple[str, int]]]:
    """Annotation file names per split, with the difficulty level (0 for train/val)."""
    return {
        'train': [(f'instances_train2019_{variant}.json', 0)],
        'val': [(f'instances_val2019_{variant}.json', 0)],
        'eval': [(f'instances_eval2019_{lvl}_{variant}.json', code) for lvl, code in LEVEL_CODES.items()],
    }


def extra_eval_subsets(src: str, variant: str) -> Dict[str, str]:
    """Extra eval subsets beside the three levels (e.g. ``instances_eval2019_coculture_EVICAN60.json``
    of the synthetic co-cultures): subset name -> file. Their images live in EVICAN_eval2019."""
    pat = re.compile(rf'^instances_eval2019_(?P<name>[A-Za-z0-9-]+)_{variant}\.json$')
    found: Dict[str, str] = {}
    for root, _, files in sorted(os.walk(src, followlinks=True)):
        for f in sorted(files):
            m = pat.match(f)
            if m and m.group('name') not in LEVEL_CODES:
                found.setdefault(m.group('name'), osp.join(root, f))
    return found


def _find(src: str, name: str, want_dir: bool) -> Optional[str]:
    hits = []
    for root, dirs, files in os.walk(src, followlinks=True):
        if name in (dirs if want_dir else files):
            hits.append(osp.join(root, name))
    if not hits:
        return None
    # prefer the documented place (SRC/Images/<dir>, SRC/<file>), then the shallowest
    hits.sort(key=lambda p: (osp.basename(osp.dirname(p)) != 'Images' if want_dir else 0,
                             p.count(os.sep), p))
    return hits[0]


def detect_variant(src: str) -> str:
    """``EVICAN60`` if its files are present under ``src``, else ``EVICAN2``; error if neither."""
    for variant in ('EVICAN60', 'EVICAN2'):
        for files in ann_file_names(variant).values():
            if any(_find(src, f, False) for f, _ in files):
                return variant
    raise ReleaseError(f'{src}: no EVICAN annotation file found (expected e.g. '
                       f'instances_train2019_EVICAN60.json or instances_eval2019_easy_EVICAN60.json)')


def _load_json(path: str) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ReleaseError(f'{path}: cannot read COCO JSON: {e}') from e
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            raise ReleaseError(f'{path}: not a COCO instances file (no "{key}" list)')
    return data


def _check_unique(items: List[dict], key: str, what: str, path: str) -> None:
    counts = Counter(it.get(key) for it in items)
    dups = [k for k, n in counts.items() if n > 1]
    if dups:
        raise ReleaseError(f'{path}: duplicate {what} {key} {sorted(dups, key=str)[:5]}')


def clean_polygons(seg, ann_id, path: str) -> Tuple[list, List[str]]:
    """Drop polygon parts with < 3 points, odd/non-finite coordinates or zero area; return (kept, notes)."""
    kept, notes = [], []
    for part in seg:
        pts = np.asarray(part, dtype=np.float64).ravel() if len(part) else np.zeros(0)
        if pts.size % 2 or pts.size < 6 or not np.all(np.isfinite(pts)):
            notes.append(f'{osp.basename(path)}: annotation {ann_id}: dropped degenerate polygon '
                         f'({pts.size // 2} points)')
            continue
        xy = pts.reshape(-1, 2)
        x, y = xy[:, 0], xy[:, 1]
        if 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) <= 0:
            notes.append(f'{osp.basename(path)}: annotation {ann_id}: dropped zero-area polygon')
            continue
        kept.append([float(v) for v in pts])
    return kept, notes


def _resolve_image(img_dir: str, file_name: str) -> Tuple[str, str]:
    """Return (absolute path, path relative to img_dir) for a file_name: as given, its base name, or a
    case-insensitive match (``.JPG``); the first candidate if none exists."""
    cands = [file_name, osp.basename(file_name)]
    for rel in cands:
        p = osp.join(img_dir, rel)
        if osp.isfile(p):
            return p, rel
    rel = _lower_names(img_dir).get(osp.basename(file_name).lower())
    if rel:
        return osp.join(img_dir, rel), rel
    return osp.join(img_dir, cands[0]), cands[0]


_LOWER_CACHE: Dict[str, Dict[str, str]] = {}


def _lower_names(img_dir: str) -> Dict[str, str]:
    if img_dir not in _LOWER_CACHE:
        _LOWER_CACHE[img_dir] = {n.lower(): n for n in os.listdir(img_dir)}
    return _LOWER_CACHE[img_dir]


_PIL_DEPTHS = {'1': '1-bit gray', 'L': '8-bit gray', 'LA': '8-bit gray', 'P': '8-bit palette',
               'PA': '8-bit palette', 'RGB': '8-bit RGB', 'RGBA': '8-bit RGB', 'CMYK': '8-bit CMYK',
               'YCbCr': '8-bit RGB', 'I;16': '16-bit gray', 'I;16L': '16-bit gray',
               'I;16B': '16-bit gray', 'I;16N': '16-bit gray', 'F': 'float gray'}


def _cv2_depth(img: np.ndarray) -> str:
    chans = 'gray' if img.ndim == 2 or img.shape[2] in (1, 2) else 'RGB'
    bits = 'float' if img.dtype.kind == 'f' else f'{8 * img.dtype.itemsize}-bit'
    return f'{bits} {chans}'


def _image_size(path: str, json_path: str, depths: Optional[Counter] = None,
                peaks: Optional[dict] = None) -> Tuple[int, int]:
    """(width, height) of a fully decoded image; counts its bit depth in ``depths`` and, above
    8 bits, keeps the largest value per depth in ``peaks`` (the model sees value / 257 there)."""
    import cv2
    try:
        with Image.open(path) as im:
            im.load()  # full decode: truncated/corrupt files fail here, not during training
            size, mode, fmt = im.size, im.mode, im.format
            depth = _PIL_DEPTHS.get(mode)
            peak = None
            if depth is not None and depth.startswith('8-bit') and mode.startswith('RGB') and \
                    fmt != 'JPEG':
                # PIL reads 16-bit RGB PNG/TIFF as 8-bit 'RGB'; the pipeline (OpenCV) keeps 16 bits
                img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
                if img is not None and img.dtype != np.uint8:
                    depth, peak = _cv2_depth(img), float(img.max())
            elif depth is None or not depth.startswith('8-bit'):
                lo_hi = im.getextrema()
                peak = float(lo_hi[1] if not isinstance(lo_hi[0], tuple) else max(e[1] for e in lo_hi))
                if depth is None:  # 'I': 16-bit PNGs in some Pillow versions
                    depth = '16-bit gray' if peak <= 65535 else '32-bit gray'
    except Exception as e:  # PIL raises several types for bad files
        # PIL cannot open some files the training pipeline reads (e.g. float RGB TIFF): ask OpenCV
        img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if img is None or img.size == 0:
            raise ReleaseError(f'{json_path}: image {path} is unreadable: {e}') from e
        size, depth = (img.shape[1], img.shape[0]), _cv2_depth(img)
        peak = None if img.dtype == np.uint8 else float(img.max())
    if depths is not None:
        depths[depth] += 1
    if peaks is not None and peak is not None:
        peaks[depth] = max(peaks.get(depth, peak), peak)
    return size


def bit_depth_notes(depths: Counter, peaks: dict) -> List[str]:
    """What the normalisation (deepcis_mm.datasets.normalize_intensity) will do with these depths."""
    notes = []
    for depth, peak in sorted(peaks.items()):
        if depth.startswith(('16-bit', '32-bit')) and 255 < peak < 16384:
            notes.append(f'{depths[depth]} {depth} image(s) have values only up to {peak:.0f} (12- or '
                         f'14-bit camera data?): the model sees value/257, at most {peak / 257:.1f} of '
                         f'255; rescale them to the full 16-bit range before converting '
                         f'(docs/training_and_data_checks.md)')
    if len(depths) > 1:
        notes.append('the release mixes bit depths (' + ', '.join(f'{n} {d}' for d, n in sorted(
            depths.items())) + '): each is brought to the 8-bit scale by the same rule')
    return notes


def _ann_extent(anns: List[dict]) -> Tuple[float, float]:
    xmax = ymax = 0.0
    for a in anns:
        x, y, w, h = a['bbox']
        xmax, ymax = max(xmax, x + w), max(ymax, y + h)
    return xmax, ymax


class _Split:
    """Accumulates one normalized split (eval merges three files)."""

    def __init__(self, name: str):
        self.name = name
        self.images: List[dict] = []
        self.annotations: List[dict] = []
        self.by_file: Dict[str, dict] = {}
        self.depths: Counter = Counter()  # bit depth -> images
        self.peaks: Dict[str, float] = {}  # bit depth (above 8) -> largest value


def convert_release(src: str, dst: str, variant: str = 'auto', skip_bad_images: bool = False,
                    image_dirs: Optional[Dict[str, str]] = None, verbose: bool = True) -> dict:
    """Convert the release at ``src`` into normalized COCO files under ``dst``; return the summary.

    Args:
        src: release root. dst: output folder. variant: 'EVICAN60', 'EVICAN2' or 'auto'.
        skip_bad_images: drop (with a warning) images that are missing or unreadable instead of failing.
        image_dirs: per-split override of the image folder (e.g. the background-blurred release images).
    """
    if not osp.isdir(src):
        raise ReleaseError(f'{src}: release folder does not exist')
    _LOWER_CACHE.clear()  # folder listings are cached per conversion only
    variant = detect_variant(src) if variant == 'auto' else variant
    warnings: List[str] = []
    cat_table: Dict[int, dict] = {}  # id -> category record (checked consistent across files)
    splits: Dict[str, _Split] = {}
    img_dir_of: Dict[str, str] = {}

    for split, files in ann_file_names(variant).items():
        present = [(p, lvl) for p, lvl in ((_find(src, f, False), lvl) for f, lvl in files) if p]
        if not present:
            warnings.append(f'{src}: no {split} annotation file ({files[0][0]}...): split skipped')
            continue
        img_dir = (image_dirs or {}).get(split) or _find(src, IMAGE_DIRS[split], True)
        if not img_dir or not osp.isdir(img_dir):
            raise ReleaseError(f'{src}: image folder {IMAGE_DIRS[split]} for {present[0][0]} not found '
                               f'(expected {osp.join(src, "Images", IMAGE_DIRS[split])})')
        img_dir_of[split] = osp.abspath(img_dir)
        out = splits[split] = _Split(split)
        for path, level in present:
            _convert_file(path, level, img_dir, out, cat_table, warnings, skip_bad_images,
                          renumber=(split == 'eval'))
    # extra eval subsets (co-cultures ...): each its own file instances_eval_<name>.json, same image folder
    for name, path in extra_eval_subsets(src, variant).items():
        img_dir = (image_dirs or {}).get('eval') or _find(src, IMAGE_DIRS['eval'], True)
        if not img_dir or not osp.isdir(img_dir):
            raise ReleaseError(f'{path}: image folder {IMAGE_DIRS["eval"]} not found')
        split = f'eval_{name}'
        img_dir_of[split] = osp.abspath(img_dir)
        splits[split] = _Split(split)
        _convert_file(path, None, img_dir, splits[split], cat_table, warnings, skip_bad_images, renumber=True)
    if not splits:
        raise ReleaseError(f'{src}: no split could be read')

    categories = sorted(cat_table.values(), key=lambda c: c['id'])
    os.makedirs(osp.join(dst, 'annotations'), exist_ok=True)
    os.makedirs(osp.join(dst, 'images'), exist_ok=True)
    for split, out in splits.items():
        _tag_cultures(out, cat_table, warnings)
        coco = dict(info=dict(description=f'{variant} {split}, normalized by deepcis_mm',
                              variant=variant),
                    images=out.images, annotations=out.annotations, categories=categories)
        atomic_write_json(osp.join(dst, 'annotations', f'instances_{split}.json'), coco)
        # extra eval subsets share the eval image folder (data_prefix images/eval/)
        _link(img_dir_of[split], osp.join(dst, 'images', 'eval' if split.startswith('eval_') else split))

    summary = summarize(splits, categories, variant)
    depths, peaks = Counter(), {}
    for out in splits.values():
        depths.update(out.depths)
        for d, v in out.peaks.items():
            peaks[d] = max(peaks.get(d, v), v)
    summary['bit_depths'] = dict(sorted(depths.items()))
    summary['max_values'] = dict(sorted(peaks.items()))
    warnings.extend(bit_depth_notes(depths, peaks))
    summary['warnings'] = warnings
    atomic_write_json(osp.join(dst, 'summary.json'), summary, indent=1)
    atomic_write_text(osp.join(dst, 'summary.md'), format_summary(summary))
    for w in warnings:
        logger.warning(w)
    if verbose:
        print(format_summary(summary))
    return summary


def _convert_file(path, level, img_dir, out: _Split, cat_table, warnings, skip_bad, renumber):
    data = _load_json(path)
    _check_unique(data['images'], 'id', 'image', path)
    _check_unique(data['annotations'], 'id', 'annotation', path)
    _check_unique(data['categories'], 'id', 'category', path)
    try:
        parsed = parse_categories(data['categories'], path)
    except ValueError as e:
        raise ReleaseError(str(e)) from None
    for cat in data['categories']:
        culture, kind = parsed[cat['id']]
        rec = dict(id=cat['id'], name=class_name(culture, kind), supercategory=culture or kind,
                   culture=culture, kind=kind, original_name=cat.get('name'))
        old = cat_table.setdefault(cat['id'], rec)
        if old['original_name'] != rec['original_name']:
            raise ReleaseError(f'{path}: category id {cat["id"]} is "{rec["original_name"]}" here but '
                               f'"{old["original_name"]}" in another file')
    anns_by_img = defaultdict(list)
    img_ids = {im['id'] for im in data['images']}
    for ann in data['annotations']:
        if ann.get('image_id') not in img_ids:
            raise ReleaseError(f'{path}: annotation {ann.get("id")} refers to unknown image_id '
                               f'{ann.get("image_id")}')
        if ann.get('category_id') not in parsed:
            raise ReleaseError(f'{path}: annotation {ann.get("id")} has unknown category_id '
                               f'{ann.get("category_id")}')
        anns_by_img[ann['image_id']].append(ann)

    for im in data['images']:
        fname = im.get('file_name')
        if not fname:
            raise ReleaseError(f'{path}: image {im.get("id")} has no file_name')
        if osp.basename(fname).endswith('Background.jpg'):
            warnings.append(f'{path}: skipped background image {fname} and its '
                            f'{len(anns_by_img[im["id"]])} annotations')
            continue
        abs_path, rel = _resolve_image(img_dir, fname)
        if rel in out.by_file:
            prev = out.by_file[rel]
            raise ReleaseError(f'{path}: image {rel} is listed again (already in '
                               f'{prev["source_file"]}, difficulty {prev["difficulty"]})')
        try:
            if not osp.isfile(abs_path):
                raise ReleaseError(f'{path}: image {fname} not found in {img_dir}')
            width, height = _image_size(abs_path, path, out.depths, out.peaks)
        except ReleaseError as e:
            if not skip_bad:
                raise
            warnings.append(f'{e} (skipped with its annotations: --skip-bad-images)')
            continue
        new_id = len(out.images) + 1 if renumber else im['id']
        anns = []
        for ann in anns_by_img[im['id']]:
            a = _normalize_ann(ann, width, height, path, warnings)
            if a is not None:
                a['image_id'] = new_id
                anns.append(a)
        jw, jh = im.get('width'), im.get('height')
        if (jw, jh) != (width, height):
            xmax, ymax = _ann_extent(anns)
            if xmax > width + 1 or ymax > height + 1:
                raise ReleaseError(f'{path}: image {fname} is {width}x{height} but the JSON says '
                                   f'{jw}x{jh} and its annotations reach {xmax:.0f}x{ymax:.0f}')
            warnings.append(f'{path}: image {fname} size fixed from {jw}x{jh} to {width}x{height}')
        # extra eval subsets (level None) keep each image's own difficulty tag, if any
        lvl = level if level is not None else int(im.get('difficulty', 0) or 0)
        rec = dict(id=new_id, file_name=rel, width=width, height=height, difficulty=lvl,
                   source_file=osp.basename(path), source_id=im['id'])
        out.images.append(rec)
        out.by_file[rel] = rec
        for a in anns:
            a['id'] = len(out.annotations) + 1 if renumber else a['id']
            out.annotations.append(a)


def _normalize_ann(ann, width, height, path, warnings) -> Optional[dict]:
    seg = ann.get('segmentation')
    out = dict(id=ann['id'], image_id=ann['image_id'], category_id=ann['category_id'],
               iscrowd=int(ann.get('iscrowd', 0)))
    if isinstance(seg, dict):  # RLE (crowd regions)
        rle = seg if isinstance(seg.get('counts'), bytes) or isinstance(seg.get('counts'), str) \
            else mask_utils.frPyObjects(seg, height, width)
        out['segmentation'] = seg
        area = float(mask_utils.area(rle))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
    else:
        polys, notes = clean_polygons(seg or [], ann['id'], path)
        warnings.extend(notes)
        if not polys:
            warnings.append(f'{osp.basename(path)}: annotation {ann["id"]}: no valid polygon left, '
                            f'annotation dropped')
            return None
        out['segmentation'] = polys
        rles = mask_utils.frPyObjects(polys, height, width)
        area = float(mask_utils.area(mask_utils.merge(rles)))
        xy = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polys])
        x0, y0 = xy.min(0)
        x1, y1 = xy.max(0)
        bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
    given_bbox = ann.get('bbox')
    out['bbox'] = [float(v) for v in given_bbox] if _valid_box(given_bbox) and \
        seg == out['segmentation'] else bbox
    given_area = ann.get('area')
    out['area'] = float(given_area) if isinstance(given_area, (int, float)) and given_area > 0 and \
        seg == out['segmentation'] else area
    if out['area'] <= 0 or out['bbox'][2] <= 0 or out['bbox'][3] <= 0:
        warnings.append(f'{osp.basename(path)}: annotation {ann["id"]}: empty mask, annotation dropped')
        return None
    return out


def _valid_box(b) -> bool:
    return isinstance(b, (list, tuple)) and len(b) == 4 and all(
        isinstance(v, (int, float)) and np.isfinite(v) for v in b) and b[2] > 0 and b[3] > 0


def _tag_cultures(out: _Split, cat_table, warnings) -> None:
    """Tag each image with its culture (EVICAN eval images hold one culture) when annotations show it."""
    cultures = defaultdict(Counter)
    for a in out.annotations:
        cultures[a['image_id']][cat_table[a['category_id']]['culture']] += 1
    for im in out.images:
        found = [c for c in cultures.get(im['id'], {}) if c]
        im['culture'] = found[0] if len(found) == 1 else None
        if len(found) > 1 and out.name == 'eval':  # (extra subsets such as co-cultures hold several)
            warnings.append(f'eval image {im["file_name"]} holds several cultures: {sorted(found)}')


def _link(target: str, link: str) -> None:
    if osp.islink(link):
        if os.readlink(link) == target:
            return
        os.remove(link)
    elif osp.exists(link):
        raise ReleaseError(f'{link}: exists and is not a link to the release images; remove it first')
    tmp = f'{link}.tmp-{os.getpid()}'
    os.symlink(target, tmp)
    os.replace(tmp, link)


def summarize(splits: Dict[str, _Split], categories: List[dict], variant: str) -> dict:
    """Images and instances per class per split and per difficulty level (the paper's dataset section)."""
    names = {c['id']: c['name'] for c in categories}
    result = dict(variant=variant, classes=[c['name'] for c in categories], splits={})
    for split, out in splits.items():
        # every level is reported, an empty one with zeros
        levels = [1, 2, 3] if split.startswith('eval') else [0]
        img_level = {im['id']: im['difficulty'] for im in out.images}
        per = {}
        for lvl in levels:
            inst, imgs = Counter(), defaultdict(set)
            for a in out.annotations:
                if img_level[a['image_id']] == lvl:
                    inst[names[a['category_id']]] += 1
                    imgs[names[a['category_id']]].add(a['image_id'])
            key = 'all' if lvl == 0 else LEVELS[lvl]
            per[key] = dict(images=sum(1 for v in img_level.values() if v == lvl),
                            instances=sum(inst.values()),
                            per_class={n: dict(images=len(imgs[n]), instances=inst[n])
                                       for n in result['classes'] if inst[n]})
        # instances per image bound the test-time proposal count a model needs (docs/inference.md)
        per_image = Counter(a['image_id'] for a in out.annotations)
        result['splits'][split] = dict(images=len(out.images), instances=len(out.annotations),
                                       max_instances_per_image=max(per_image.values(), default=0),
                                       levels=per, bit_depths=dict(sorted(out.depths.items())))
    return result


def format_summary(summary: dict) -> str:
    """Markdown tables of :func:`summarize`."""
    lines = [f'# {summary["variant"]} (normalized)', '']
    if summary.get('bit_depths'):
        peaks = summary.get('max_values') or {}
        lines += ['Images by bit depth: ' + ', '.join(
            f'{d}: {n}' + (f' (values up to {peaks[d]:g})' if d in peaks else '')
            for d, n in summary['bit_depths'].items()) +
            ' (8-bit reaches the model unchanged, other depths as their 8-bit rendering: see '
            'docs/training_and_data_checks.md)', '']
    for split, s in summary['splits'].items():
        lines.append(f'## {split}: {s["images"]} images, {s["instances"]} instances')
        lines.append('')
        if s['images']:
            lines += [f'Instances per image: mean {s["instances"] / s["images"]:.1f}, '
                      f'max {s.get("max_instances_per_image", 0)}', '']
        levels = list(s['levels'])
        header = ['class'] + [f'{lv} {what}' for lv in levels for what in ('images', 'instances')]
        rows = []
        for name in summary['classes']:
            cells = []
            for lv in levels:
                pc = s['levels'][lv]['per_class'].get(name, dict(images=0, instances=0))
                cells += [str(pc['images']), str(pc['instances'])]
            if any(c != '0' for c in cells):
                rows.append([name] + cells)
        rows.append(['**total**'] + [n for lv in levels for n in (s['levels'][lv]['images'],
                                                                   s['levels'][lv]['instances'])])
        lines += [markdown_table(header, rows), '']
    return '\n'.join(lines)


__all__ = ['convert_release', 'detect_variant', 'extra_eval_subsets', 'ReleaseError', 'summarize', 'format_summary']
