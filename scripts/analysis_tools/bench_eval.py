#!/usr/bin/env python
"""Time the full DeepCIS evaluation tables against one plain pycocotools COCOeval (bbox + segm).

    python scripts/analysis_tools/bench_eval.py [--images 500] [--cultures 30] [--repeats 3] [--seed 0]

Both sides run in this one process on the same synthetic ground truth (60 classes: 30 cultures x
cell/nucleus, images tagged with difficulty 1-3) and the same predictions (jittered ground truth,
wrong cultures, false positives). Reported: median seconds of each side and their ratio.
"""
import argparse
import json
import os
import os.path as osp
import sys
import tempfile
import time

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from deepcis_mm.evaluation import DifficultyCocoMetric

SIZE = 256


def make_case(n_images, n_cultures, seed):
    """Ground truth (COCO dict) and predictions in DifficultyCocoMetric's internal format."""
    rng = np.random.default_rng(seed)
    cats = [dict(id=2 * c + k + 1, name=f'C{c} {kind}', culture=f'C{c}', kind=kind)
            for c in range(n_cultures) for k, kind in enumerate(('cell', 'nucleus'))]
    images, anns, preds = [], [], []
    for img_id in range(1, n_images + 1):
        culture = int(rng.integers(n_cultures))
        images.append(dict(id=img_id, file_name=f'{img_id}.jpg', width=SIZE, height=SIZE,
                           difficulty=int(rng.integers(1, 4))))
        boxes, labels, scores = [], [], []
        for _ in range(int(rng.integers(5, 25))):
            w, h = (int(v) for v in rng.integers(8, 60, 2))
            x, y = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
            for kind, (bx, by, bw, bh) in enumerate(((x, y, w, h), (x + w // 4, y + h // 4, w // 2, h // 2))):
                anns.append(dict(id=len(anns) + 1, image_id=img_id, category_id=2 * culture + kind + 1,
                                 bbox=[bx, by, bw, bh], area=float(bw * bh), iscrowd=0,
                                 segmentation=[[bx, by, bx + bw, by, bx + bw, by + bh, bx, by + bh]]))
                if rng.random() < 0.85:
                    j = rng.integers(-3, 4, 4)
                    c = culture if rng.random() < 0.8 else int(rng.integers(n_cultures))
                    boxes.append([bx + j[0], by + j[1], bx + bw + j[2], by + bh + j[3]])
                    labels.append(2 * c + kind)
                    scores.append(float(rng.random()))
        for _ in range(int(rng.integers(0, 10))):  # false positives
            x, y = (int(v) for v in rng.integers(0, SIZE - 30, 2))
            boxes.append([x, y, x + 20, y + 20])
            labels.append(int(rng.integers(2 * n_cultures)))
            scores.append(float(rng.random()))
        boxes = np.clip(np.asarray(boxes, np.float32).reshape(-1, 4), 0, SIZE - 1)
        masks = []
        for x1, y1, x2, y2 in boxes.astype(int):
            m = np.zeros((SIZE, SIZE), np.uint8, order='F')
            m[y1:y2 + 1, x1:x2 + 1] = 1
            masks.append(mask_utils.encode(m))
        preds.append(dict(img_id=img_id, bboxes=boxes, scores=np.asarray(scores, np.float32),
                          labels=np.asarray(labels), masks=masks))
    return dict(images=images, annotations=anns, categories=cats), preds


def plain_cocoeval(ann_file, metric, preds):
    """What mmdet's CocoMetric does per IoU type: one COCOeval over all images."""
    coco = COCO(ann_file)
    for iou in ('bbox', 'segm'):
        dt = coco.loadRes(metric._detections(preds, iou))
        E = COCOeval(coco, dt, iou)
        E.params.maxDets = [100, 300, 1000]
        E.evaluate()
        E.accumulate()
        E.summarize()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', type=int, default=500)
    p.add_argument('--cultures', type=int, default=30)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', help='also write the timings here')
    args = p.parse_args(argv)
    gt, preds = make_case(args.images, args.cultures, args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = osp.join(tmp, 'gt.json')
        with open(ann_file, 'w') as f:
            json.dump(gt, f)
        metric = DifficultyCocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
        metric.dataset_meta = dict(classes=[c['name'] for c in gt['categories']])
        metric.cat_ids = [c['id'] for c in gt['categories']]
        results = [(dict(img_id=pr['img_id']), pr) for pr in preds]
        devnull = open(os.devnull, 'w')
        t_plain, t_full = [], []
        for _ in range(args.repeats):
            stdout, sys.stdout = sys.stdout, devnull  # pycocotools prints
            try:
                t = time.perf_counter()
                plain_cocoeval(ann_file, metric, preds)
                t_plain.append(time.perf_counter() - t)
                t = time.perf_counter()
                flat = metric.compute_metrics(results)
                t_full.append(time.perf_counter() - t)
            finally:
                sys.stdout = stdout
    plain, full = float(np.median(t_plain)), float(np.median(t_full))
    n_dets = sum(len(p['labels']) for p in preds)
    print(f'{args.images} images, {2 * args.cultures} classes, {len(gt["annotations"])} ground truths, '
          f'{n_dets} detections; median of {args.repeats}')
    print(f'plain pycocotools COCOeval (bbox + segm, all images): {plain:.2f} s')
    print(f'DeepCIS tables (4 levels x per class, per kind, class-agnostic, culture accuracy): {full:.2f} s')
    print(f'ratio: {full / plain:.2f}x   (segm mAP {flat["segm_mAP"]:.4f}, culture acc {flat["culture_acc"]:.4f})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(plain_s=plain, full_s=full, ratio=full / plain, images=args.images), f)
    return 0


if __name__ == '__main__':
    sys.exit(main())
