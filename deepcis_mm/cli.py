"""``deepcis`` command line: ``deepcis predict INPUT --config C --checkpoint K [--out DIR] ...``."""
import argparse
import csv
import io
import json
import os.path as osp
import sys
from typing import List, Optional

import numpy as np

CSV_FIELDS = ['image', 'instance_id', 'kind', 'culture', 'cls', 'score', 'bbox_x', 'bbox_y', 'bbox_w',
              'bbox_h', 'area', 'perimeter', 'equivalent_diameter', 'eccentricity', 'solidity', 'centroid_x',
              'centroid_y', 'parent_cell_id', 'nucleus_cell_area_ratio']


def _rle(mask: np.ndarray) -> dict:
    """COCO RLE (JSON-ready) of a binary mask."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode()
    return rle


def _image_ap50(gt_coco, file_name: str, res, cat_ids: List[int]) -> Optional[float]:
    """segm AP50 of one image against a ground-truth COCO file (matched by file name), or None."""
    from .evaluation import FastCOCOeval
    ids = [i for i, im in gt_coco.imgs.items() if osp.basename(im['file_name']) == osp.basename(file_name)]
    if not ids:
        return None
    dets = []
    for m, s, lab in zip(res['masks'], res['scores'], res['labels']):
        dets.append(dict(image_id=ids[0], category_id=cat_ids[int(lab)], segmentation=_rle(m), score=float(s)))
    if not dets:
        return 0.0
    E = FastCOCOeval(gt_coco, gt_coco.loadRes(dets), 'segm')
    E.params.imgIds = ids[:1]
    E.params.maxDets = [100, 1000, 3000]
    E.evaluate()
    E.accumulate()
    prec = E.eval['precision'][0, :, :, 0, -1]
    prec = prec[prec > -1]
    return float(prec.mean()) if prec.size else None


def predict(args) -> int:
    """Run the predictor over the inputs and write every output; see ``deepcis predict --help``."""
    from tqdm import tqdm

    from .apis.inference import InputError, Predictor, instance_rows, list_inputs, read_image, \
        write_image_outputs
    from .utils import atomic_write_text
    try:
        paths = list_inputs(args.input)
        predictor = Predictor(args.config, args.checkpoint, args.device, args.score_thr, args.consensus,
                              args.tile_size, args.tile_overlap)
        gt = None
        if args.gt:
            from pycocotools.coco import COCO
            if not osp.isfile(args.gt):
                raise InputError(f'{args.gt}: ground-truth file not found')
            gt = COCO(args.gt)
            name_to_id = {c['name']: c['id'] for c in gt.cats.values()}
            missing = [c for c in predictor.classes if c not in name_to_id]
            if missing:
                raise InputError(f'{args.gt}: classes {missing[:5]} of the checkpoint are not in it')
            gt_cat_ids = [name_to_id[c] for c in predictor.classes]
        classes, kinds = predictor.classes, predictor.kinds
        categories = [dict(id=i + 1, name=c, culture=cu, kind=k)
                      for i, (c, cu, k) in enumerate(zip(classes, predictor.cultures, kinds))]
        rows, coco_images, coco_anns, results = [], [], [], []
        stems = set()
        for start in tqdm(range(0, len(paths), args.batch_size), desc='deepcis predict', unit='batch',
                          disable=args.quiet):
            batch = paths[start:start + args.batch_size]
            imgs = [read_image(p) for p in batch]  # an unreadable file stops before anything of it is written
            for path, img, res in zip(batch, imgs, predictor.predict(imgs)):
                stem = osp.splitext(osp.basename(path))[0]
                if stem in stems:
                    raise InputError(f'{path}: another input has the same name {stem!r}; outputs would collide')
                stems.add(stem)
                img_rows = instance_rows(osp.basename(path), res, classes, predictor.cultures, kinds)
                caption = ''
                if gt is not None:
                    ap = _image_ap50(gt, path, res, gt_cat_ids)
                    caption = f'{osp.basename(path)}  AP50 (segm) = ' + ('n/a' if ap is None else f'{100 * ap:.1f}')
                write_image_outputs(args.out, stem, img, res, img_rows, classes, kinds, predictor.palette,
                                    caption)
                image_id = len(coco_images) + 1
                coco_images.append(dict(id=image_id, file_name=osp.basename(path), width=img.shape[1],
                                        height=img.shape[0]))
                for row, m in zip(img_rows, res['masks']):
                    det = dict(image_id=image_id, category_id=classes.index(row['cls']) + 1,
                               segmentation=_rle(m), score=row['score'],
                               bbox=[row['bbox_x'], row['bbox_y'], row['bbox_w'], row['bbox_h']])
                    results.append(det)
                    coco_anns.append(dict(det, id=len(coco_anns) + 1, area=float(row['area']), iscrowd=0))
                rows.extend(img_rows)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator='\n')
        writer.writeheader()
        writer.writerows({k: ('' if r[k] is None else r[k]) for k in CSV_FIELDS} for r in rows)
        atomic_write_text(osp.join(args.out, 'instances.csv'), buf.getvalue())
        atomic_write_text(osp.join(args.out, 'coco_results.json'), json.dumps(results))
        atomic_write_text(osp.join(args.out, 'coco_instances.json'), json.dumps(
            dict(images=coco_images, annotations=coco_anns, categories=categories)))
    except InputError as e:
        print(f'deepcis predict: error: {e}', file=sys.stderr)
        return 2
    print(f'deepcis predict: {len(rows)} instances in {len(paths)} image(s) -> {args.out} '
          f'(overlays/, labels/, geojson/, instances.csv, coco_results.json, coco_instances.json)')
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='deepcis', description='DeepCIS tools')
    sub = p.add_subparsers(dest='command', required=True)
    pr = sub.add_parser('predict', help='segment cells and nuclei and name their culture',
                        description='Predict images; write overlays, label images, GeoJSON, CSV and COCO.')
    pr.add_argument('input', help='an image, a folder, or a glob pattern (jpg/png/tif, 8/16 bit, gray/RGB)')
    pr.add_argument('--config', required=True, help='model config (e.g. configs/demo/...py)')
    pr.add_argument('--checkpoint', required=True, help='trained checkpoint (.pth)')
    pr.add_argument('--out', default='work_dirs/predict', help='output folder')
    pr.add_argument('--device', default='cpu', help="'cpu' or 'cuda', 'cuda:1', ...")
    pr.add_argument('--batch-size', type=int, default=1)
    pr.add_argument('--score-thr', type=float, default=0.3)
    pr.add_argument('--consensus', action='store_true',
                    help='image-level culture consensus (one culture per image; not for co-cultures)')
    pr.add_argument('--tile-size', type=int, default=1024, help='tile images with a larger side')
    pr.add_argument('--tile-overlap', type=int, default=128)
    pr.add_argument('--gt', help='ground-truth COCO file: per-image AP50 in the overlay caption')
    pr.add_argument('--quiet', action='store_true', help='no progress bar')
    from .evaluation.compare_runs import add_compare_arguments
    add_compare_arguments(sub.add_parser(
        'compare', help='put evaluated runs side by side (markdown, CSV, bar plot)',
        description='Compare runs from their ap_tables (see docs/evaluation_and_comparison.md).'))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == 'predict':
        return predict(args)
    if args.command == 'compare':
        from .evaluation.compare_runs import compare_main
        return compare_main(args)
    return 1


if __name__ == '__main__':
    sys.exit(main())
