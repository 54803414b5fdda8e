"""Every output of ``deepcis predict``, made from one :class:`~.instances.Instances` per image (the
last step of a prediction, :mod:`.predict_files`).

Instance ids are 1..N per image in score order (after the overlap rule). The same id is the CSV's
``instance_id``, the pixel value in ``labels/{stem}_{kind}.png``, ``properties.instance_id`` of the
GeoJSON feature, ``instance_id`` of each COCO result/annotation, and the number drawn on the overlay.
All files go into a staging folder (:class:`~.output_folder.OutputFolder`) that becomes the output
folder only when the run succeeds.
"""
import csv
import json
import os.path as osp
from typing import Dict, List, Optional

import cv2
import numpy as np

from ..evaluation.image_ap import image_ap50
from .errors import InputError
from .instances import Instances, label_image, mask_rle
from .morphology import measure, parent_label
from .outline import mask_geometry
from .output_folder import OutputFolder

CSV_FIELDS = ['image', 'instance_id', 'kind', 'culture', 'cls', 'score', 'bbox_x', 'bbox_y', 'bbox_w',
              'bbox_h', 'area', 'perimeter', 'equivalent_diameter', 'eccentricity', 'solidity', 'centroid_x',
              'centroid_y', 'parent_cell_id', 'nucleus_cell_area_ratio']
# written when the model has the image-level culture branch: the image's culture, its probability
IMAGE_CULTURE_FIELDS = ['image_culture', 'image_culture_prob']


def instance_rows(image_name: str, inst: Instances, classes, cultures, kinds,
                  cell_labels: Optional[np.ndarray]) -> List[dict]:
    """Per-instance table rows: identity, score, box, morphology, nucleus -> cell link and ratios.

    ``cell_labels``: the image's cell label image (ids 1..N), used to find each nucleus's cell.
    """
    rows = []
    for i in range(len(inst)):
        lab = int(inst.labels[i])
        x1, y1, x2, y2 = (float(v) for v in inst.bboxes[i])
        row = dict(image=image_name, instance_id=i + 1, kind=kinds[lab], culture=cultures[lab],
                   cls=classes[lab], score=float(inst.scores[i]), bbox_x=x1, bbox_y=y1, bbox_w=x2 - x1,
                   bbox_h=y2 - y1)
        row.update(measure(inst.masks[i], inst.origins[i]))
        row['parent_cell_id'] = None
        if kinds[lab] == 'nucleus' and cell_labels is not None:
            row['parent_cell_id'] = parent_label(inst.masks[i], inst.origins[i], cell_labels)
        row['nucleus_cell_area_ratio'] = None
        rows.append(row)
    nucleus_area: Dict[int, int] = {}
    for row in rows:
        if row['parent_cell_id'] is not None:
            nucleus_area[row['parent_cell_id']] = nucleus_area.get(row['parent_cell_id'], 0) + row['area']
    for cell_id, area in nucleus_area.items():
        rows[cell_id - 1]['nucleus_cell_area_ratio'] = area / rows[cell_id - 1]['area']
    return rows


def geojson(rows: List[dict], inst: Instances, palette) -> dict:
    """QuPath-importable FeatureCollection: one (Multi)Polygon per instance along its pixel edges."""
    feats = []
    for row, mask, origin, lab in zip(rows, inst.masks, inst.origins, inst.labels):
        r, g, b = palette[int(lab)]
        feats.append(dict(type='Feature', geometry=mask_geometry(mask, int(origin[0]), int(origin[1])),
                          properties=dict(
                              objectType='detection', instance_id=row['instance_id'],
                              name=f'{row["cls"]} {row["instance_id"]}',
                              classification=dict(name=row['cls'], color=[r, g, b]),
                              measurements={k: row[k] for k in ('score', 'area', 'perimeter', 'equivalent_diameter',
                                                                  'eccentricity', 'solidity') if row[k] is not None})))
    return dict(type='FeatureCollection', features=feats)


def overlay(img: np.ndarray, inst: Instances, classes, palette, caption: str = '') -> np.ndarray:
    """Masks coloured per class (a culture's cell and nucleus share a hue), outlines, instance ids,
    legend with counts, caption."""
    out = img.copy()
    for i in range(len(inst)):
        r, g, b = palette[int(inst.labels[i])]
        x0, y0 = (int(v) for v in inst.origins[i])
        m = inst.masks[i]
        view = out[y0:y0 + m.shape[0], x0:x0 + m.shape[1]]
        view[m] = (0.55 * view[m] + 0.45 * np.array([b, g, r])).astype(np.uint8)
    for i in range(len(inst)):
        r, g, b = palette[int(inst.labels[i])]
        x0, y0 = (int(v) for v in inst.origins[i])
        m = np.pad(inst.masks[i], 1).astype(np.uint8)
        cs, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE, offset=(x0 - 1, y0 - 1))
        cv2.drawContours(out, cs, -1, (b, g, r), 1)
    for i in range(len(inst)):
        ys, xs = np.nonzero(inst.masks[i])
        cx, cy = int(xs.mean()) + int(inst.origins[i][0]), int(ys.mean()) + int(inst.origins[i][1])
        cv2.putText(out, str(i + 1), (cx - 4, cy + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.3, (0, 0, 0), 1, cv2.LINE_AA)
    present = sorted({int(v) for v in inst.labels})
    pad = 16 * (len(present) + 1) + (18 if caption else 0)
    canvas = np.full((out.shape[0] + pad, max(out.shape[1], 260), 3), 255, np.uint8)
    canvas[:out.shape[0], :out.shape[1]] = out
    y = out.shape[0] + 14
    for lab in present:
        r, g, b = palette[lab]
        cv2.rectangle(canvas, (4, y - 10), (16, y), (b, g, r), -1)
        n = int((inst.labels == lab).sum())
        cv2.putText(canvas, f'{classes[lab]} ({n})', (22, y), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        y += 16
    if caption:
        cv2.putText(canvas, caption, (4, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    return canvas


def _imwrite(path: str, img: np.ndarray) -> None:
    if not cv2.imwrite(path, img):
        raise OSError(f'{path}: could not be written')


class PredictionWriter:
    """Writes each image's files into an :class:`OutputFolder` as it comes, then the run's tables.

    ``gt``: a pycocotools COCO of ground truth; when given, COCO exports use its image ids (matched
    by file name) and category ids (matched by name), and overlays show each image's segm AP50.
    """

    def __init__(self, folder: OutputFolder, classes, cultures, kinds, palette, gt=None,
                 image_culture: bool = False):
        self.folder, self.classes, self.cultures, self.kinds, self.palette = folder, classes, cultures, kinds, palette
        self.gt = gt
        self.fields = CSV_FIELDS + (IMAGE_CULTURE_FIELDS if image_culture else [])
        try:
            self._start(gt)
        except BaseException:
            folder.abort()
            raise

    def _start(self, gt) -> None:
        classes, folder = self.classes, self.folder
        if gt is None:
            self.cat_ids = list(range(1, len(classes) + 1))
            self.gt_images = None
        else:
            by_name = {c['name']: c['id'] for c in gt.cats.values()}
            missing = [c for c in classes if c not in by_name]
            if missing:
                raise InputError(f'classes {missing[:5]} of the checkpoint are not in the --gt file')
            self.cat_ids = [by_name[c] for c in classes]
            self.gt_images = {}
            for img in gt.imgs.values():
                self.gt_images.setdefault(osp.basename(img['file_name']), []).append(img)
        self.csv_file = open(folder.path('instances.csv'), 'w', newline='')
        self.csv = csv.DictWriter(self.csv_file, fieldnames=self.fields, lineterminator='\n')
        self.csv.writeheader()
        self.images, self.annotations, self.results, self.skipped = [], [], [], []
        self.stems, self.n_instances = set(), 0

    def gt_image(self, path: str) -> Optional[dict]:
        """The --gt image entry of an input (by file name); InputError when missing or ambiguous."""
        if self.gt_images is None:
            return None
        found = self.gt_images.get(osp.basename(path), [])
        if len(found) != 1:
            what = 'not in' if not found else f'{len(found)} times in'
            raise InputError(f'{path}: file name {what} the --gt file (COCO image ids are matched by file name)')
        return found[0]

    def add(self, path: str, img: np.ndarray, inst: Instances) -> None:
        """All outputs of one image."""
        name = osp.basename(path)
        stem = osp.splitext(name)[0]
        if stem in self.stems:
            raise InputError(f'{path}: another input has the same name {stem!r}; outputs would collide')
        self.stems.add(stem)
        height, width = img.shape[:2]
        gt_img = self.gt_image(path)
        if gt_img is not None and (gt_img['height'], gt_img['width']) != (height, width):
            raise InputError(f'{path}: {width}x{height} px, but the --gt file says '
                             f'{gt_img["width"]}x{gt_img["height"]}')
        image_id = gt_img['id'] if gt_img is not None else len(self.images) + 1
        labels = {kind: label_image(inst, self.kinds, kind) for kind in sorted(set(self.kinds))}
        rows = instance_rows(name, inst, self.classes, self.cultures, self.kinds, labels.get('cell'))
        dets = []
        for i, row in enumerate(rows):
            x0, y0 = (int(v) for v in inst.origins[i])
            dets.append(dict(image_id=image_id, category_id=self.cat_ids[int(inst.labels[i])],
                             segmentation=mask_rle(inst.masks[i], x0, y0, (height, width)), score=row['score'],
                             bbox=[row['bbox_x'], row['bbox_y'], row['bbox_w'], row['bbox_h']],
                             instance_id=row['instance_id']))
        caption = ''
        if self.gt is not None:
            ap = image_ap50(self.gt, image_id, dets)
            caption = f'{name}  AP50 (segm) = ' + ('n/a' if ap is None else f'{100 * ap:.1f}')
        if inst.image_culture is not None:
            culture, prob = inst.image_culture
            caption = (caption + '  ' if caption else '') + f'image culture: {culture} ({100 * prob:.0f}%)'
            for row in rows:
                row['image_culture'], row['image_culture_prob'] = culture, round(prob, 4)
        _imwrite(self.folder.path('overlays', f'{stem}.png'), overlay(img, inst, self.classes, self.palette, caption))
        for kind, lab in labels.items():
            _imwrite(self.folder.path('labels', f'{stem}_{kind}.{"png" if lab.dtype == np.uint16 else "tif"}'), lab)
        with open(self.folder.path('geojson', f'{stem}.geojson'), 'w') as f:
            json.dump(geojson(rows, inst, self.palette), f)
        self.csv.writerows({k: ('' if r.get(k) is None else r[k]) for k in self.fields} for r in rows)
        self.images.append(dict(id=image_id, file_name=name, width=width, height=height))
        for det, row in zip(dets, rows):
            self.results.append(det)
            self.annotations.append(dict(det, id=len(self.annotations) + 1, area=float(row['area']), iscrowd=0))
        self.n_instances += len(rows)

    def skip(self, path: str, reason: str) -> None:
        self.skipped.append((path, reason))

    def finish(self) -> None:
        """Write the run's tables and move the folder into place."""
        self.csv_file.close()
        categories = [dict(id=cid, name=c, culture=cu, kind=k)
                      for cid, c, cu, k in zip(self.cat_ids, self.classes, self.cultures, self.kinds)]
        with open(self.folder.path('coco_results.json'), 'w') as f:
            json.dump(self.results, f)
        with open(self.folder.path('coco_instances.json'), 'w') as f:
            json.dump(dict(images=self.images, annotations=self.annotations, categories=categories), f)
        if self.skipped:
            with open(self.folder.path('skipped.txt'), 'w') as f:
                f.writelines(f'{p}\t{why}\n' for p, why in self.skipped)
        self.folder.commit()

    def abort(self) -> None:
        if not self.csv_file.closed:
            self.csv_file.close()
        self.folder.abort()

