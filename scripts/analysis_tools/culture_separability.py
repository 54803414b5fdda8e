#!/usr/bin/env python
"""How well can an image's culture be told, and from what? Image-level culture accuracy of three kinds
of evidence, fitted on the train split and measured on train and on the (single-culture) eval split:

    python scripts/analysis_tools/culture_separability.py PREPARED_DIR
        [--config CONFIG --checkpoint CKPT [--score-thr 0.3]] [--out DIR]

1. ``morphology (annotations)``: no model. Each image is described by the medians of its annotated
   instances' shape per kind (log equivalent diameter, log major/minor axis ratio, by scikit-image's
   ``regionprops`` through :func:`deepcis_mm.apis.morphology.measure`) and the nucleus/cell size ratio;
   a nearest-centroid classifier (features standardized on train) names the culture. This is what a
   perfect detector plus cell morphology would give: the information the images hold.
2. ``RoI head on GT boxes`` (with ``--config/--checkpoint``): the trained model's per-instance culture
   posterior (stage-averaged cascade scores, kinds summed) on the ground-truth boxes; per instance and
   per image (sum of log posteriors over the image's instances).
3. ``image culture branch`` (a checkpoint of a ``deepcis-imgculture_*`` config): the branch's posterior.
4. ``morphology of the model's detections`` (with ``--config/--checkpoint``): descriptor 1 computed from
   the model's own detections (score >= ``--score-thr``; kind from the class table), the nearest-centroid
   classifier fitted on the train split's detections (so a constant bias of the predicted shapes cancels):
   what a culture rule on the detector's morphology would give.

A large train/eval gap in 2 or 3 with a high eval accuracy in 1 says the model memorised the training
images rather than learning the culture (docs/culture_from_image.md); 4 against 1 says how much of the
morphology the detector's own masks keep. Writes ``culture_separability.md``
and ``.json`` to ``--out`` (default: PREPARED_DIR).
"""
import argparse
import os.path as osp
import sys
from collections import Counter
from typing import Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root

from deepcis_mm.apis.morphology import measure  # noqa: E402
from deepcis_mm.datasets.categories import parse_categories  # noqa: E402
from deepcis_mm.utils import atomic_write_json, atomic_write_text, markdown_table  # noqa: E402

SPLITS = (('train', 'instances_train.json'), ('eval', 'instances_eval.json'))


def image_descriptor(masks: List[np.ndarray], kinds: List[str]) -> np.ndarray:
    """Per kind (cell, nucleus): median log equivalent diameter and median log axis ratio of the
    masks; then nucleus minus cell median log diameter. NaN where a kind has no mask."""
    shape = {'cell': [], 'nucleus': []}
    for m, k in zip(masks, kinds):
        p = measure(m)
        if p['area'] >= 3:
            shape[k].append((np.log(p['equivalent_diameter']),
                             -0.5 * np.log(max(1.0 - p['eccentricity'] ** 2, 1e-6))))
    out = []
    for k in ('cell', 'nucleus'):
        v = np.array(shape[k]).reshape(-1, 2)
        out += list(np.median(v, 0)) if len(v) else [np.nan, np.nan]
    return np.array(out + [out[2] - out[0]])


def annotated_images(ann_file: str) -> List[Tuple[str, int, np.ndarray]]:
    """(culture, level, descriptor) of every image whose annotations name exactly one culture."""
    from pycocotools.coco import COCO
    coco = COCO(ann_file)
    table = parse_categories(list(coco.cats.values()), ann_file)
    out = []
    for img_id in sorted(coco.getImgIds()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False))
        cultures = {table[a['category_id']][0] for a in anns}
        if len(cultures) != 1 or None in cultures:
            continue
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        kinds = [table[a['category_id']][1] for a in anns]
        level = int(coco.imgs[img_id].get('difficulty', 0) or 0)
        out.append((cultures.pop(), level, image_descriptor(masks, kinds)))
    return out


def nearest_centroid(train_x: np.ndarray, train_y: List[str], test_x: np.ndarray) -> List[str]:
    """Nearest class centroid in features standardized on train; NaN features are left out."""
    mu, sd = np.nanmean(train_x, 0), np.nanstd(train_x, 0) + 1e-6
    z_tr, z_te = (train_x - mu) / sd, (test_x - mu) / sd
    classes = sorted(set(train_y))
    cent = np.stack([np.nanmean(z_tr[np.array(train_y) == c], 0) for c in classes])
    dist = np.nansum((z_te[:, None] - cent[None]) ** 2, -1)
    return [classes[i] for i in dist.argmin(1)]


def _acc(hits: List[bool]) -> Optional[float]:
    return round(100.0 * float(np.mean(hits)), 1) if hits else None


def _by_level(levels: List[int], hits: List[bool]) -> Dict[str, Optional[float]]:
    return {f'L{lvl}': _acc([h for l_, h in zip(levels, hits) if l_ == lvl]) for lvl in sorted(set(levels))}


def centroid_accuracy(data: Dict[str, List[Tuple[str, int, np.ndarray]]]) -> dict:
    """Nearest-centroid culture of (culture, level, descriptor) items, fitted on data['train'] and scored
    on every split: {split: image_acc, n_images, levels}."""
    tr_y = [c for c, _, _ in data['train']]
    tr_x = np.stack([d for _, _, d in data['train']])
    out = {}
    for split, items in data.items():
        pred = nearest_centroid(tr_x, tr_y, np.stack([d for _, _, d in items]))
        hits = [p == c for p, (c, _, _) in zip(pred, items)]
        out[split] = dict(image_acc=_acc(hits), n_images=len(items), levels=_by_level([lv for _, lv, _ in items], hits))
    return out


def morphology_accuracy(prepared: str) -> dict:
    """Evidence 1: nearest-centroid culture from annotated morphology (train fit, train/eval scored)."""
    data = {s: annotated_images(osp.join(prepared, 'annotations', f)) for s, f in SPLITS}
    for split, f in SPLITS:
        if not data[split]:
            raise ValueError(f'{osp.join(prepared, "annotations", f)}: no image whose annotations name exactly '
                             'one culture (EVICAN2-style classes carry none)')
    return centroid_accuracy(data)


def detections_descriptor(pred, kinds, score_thr: float) -> np.ndarray:
    """:func:`image_descriptor` of one image's detections (mmdet ``pred_instances`` with full-image
    masks) scoring at least ``score_thr``; ``kinds``: the kind of every label."""
    keep = (pred.scores >= score_thr).nonzero().flatten().tolist()
    masks = [np.asarray(pred.masks[i].cpu().numpy() if hasattr(pred.masks[i], 'cpu') else pred.masks[i], bool)
             for i in keep]
    return image_descriptor(masks, [kinds[int(pred.labels[i])] for i in keep])


def _roi_logits(roi_head, x, rois):
    """Class logits of ``rois``: stage-averaged for a cascade (as its test does), else the one stage."""
    stages = getattr(roi_head, 'num_stages', None)
    if stages is None:
        return roi_head._bbox_forward(x, rois)['cls_score']
    return sum(roi_head._bbox_forward(s, x, rois)['cls_score'] for s in range(stages)) / stages


def model_accuracy(config: str, checkpoint: str, prepared: str, score_thr: float = 0.3) -> dict:
    """Evidence 2 and 3 of a trained model on the ground-truth boxes of each split, and evidence 4 from
    its detections (``detections``: nearest centroid fitted on the train split's detections)."""
    import torch
    from mmdet.registry import DATASETS
    from mmdet.structures.bbox import bbox2roi
    from mmengine.config import Config

    from deepcis_mm.datasets.categories import class_table
    from deepcis_mm.engine.checkpoint_fit import init_detector_strict
    from deepcis_mm.models.culture_combination import culture_index
    cfg = Config.fromfile(config)
    model, _ = init_detector_strict(cfg, checkpoint, config)
    table = class_table(model.dataset_meta)
    names, label_culture = culture_index(table[0])
    label_culture = torch.tensor(label_culture)
    roi_head = model.roi_head
    branch = getattr(roi_head, 'img_culture_head', None)
    out, detected = {}, {}
    for split, ann in SPLITS:
        ds_cfg = cfg.test_dataloader.dataset.copy()
        ds_cfg.update(data_root=prepared.rstrip('/') + '/', ann_file=f'annotations/{ann}', subset='all',
                      data_prefix=dict(img=f'images/{split}/'))
        ds = DATASETS.build(ds_cfg)
        if tuple(ds.metainfo['classes']) != tuple(model.dataset_meta['classes']):
            raise ValueError(f'{osp.join(prepared, "annotations", ann)}: classes differ from the checkpoint\'s '
                             f'({len(ds.metainfo["classes"])} vs {len(model.dataset_meta["classes"])})')
        inst, img_vote, img_branch, levels, detected[split] = [], [], [], [], []
        for i in range(len(ds)):
            item = ds[i]
            data = model.data_preprocessor(dict(inputs=[item['inputs']], data_samples=[item['data_samples']]))
            gt = data['data_samples'][0].gt_instances
            true = label_culture[gt.labels]
            if len(gt) == 0 or len(set(true.tolist())) != 1 or int(true[0]) < 0:
                continue
            with torch.no_grad():
                x = model.extract_feat(data['inputs'])
                rois = bbox2roi([gt.bboxes])
                probs = torch.softmax(_roi_logits(roi_head, x, rois), -1)[:, :len(label_culture)]
                post = torch.zeros(len(gt), len(names)).index_add_(1, label_culture.clamp_min(0), probs)
                post = post / post.sum(1, keepdim=True).clamp_min(1e-12)
            inst += (post.argmax(1) == true).tolist()
            img_vote.append(int(post.clamp_min(1e-12).log().sum(0).argmax()) == int(true[0]))
            if branch is not None:
                img_branch.append(int(branch.predict(x).argmax(1)[0]) == int(true[0]))
            levels.append(int(ds.get_data_info(i).get('difficulty', 0) or 0))
            with torch.no_grad():
                pred = model.predict(data['inputs'], data['data_samples'], rescale=True)[0].pred_instances
            detected[split].append((names[int(true[0])], levels[-1], detections_descriptor(pred, table[1], score_thr)))
        out[split] = dict(instance_acc=_acc(inst), image_acc=_acc(img_vote), levels=_by_level(levels, img_vote),
                          branch_image_acc=_acc(img_branch) if branch is not None else None,
                          branch_levels=_by_level(levels, img_branch) if branch is not None else None,
                          n_images=len(levels))
    out['detections'] = centroid_accuracy(detected)
    return out


def report(morph: dict, model: Optional[dict]) -> str:
    """The markdown table of the evidence rows."""
    levels = sorted(set(morph['eval']['levels']))
    rows = [['morphology (annotations), nearest centroid', morph['train']['image_acc'], morph['eval']['image_acc']]
            + [morph['eval']['levels'].get(lv) for lv in levels] + ['n/a']]
    if model:
        rows.append(['RoI head on GT boxes (sum of log posteriors)', model['train']['image_acc'],
                     model['eval']['image_acc']] + [model['eval']['levels'].get(lv) for lv in levels]
                    + [f"{model['train']['instance_acc']} / {model['eval']['instance_acc']}"])
        if model['eval']['branch_image_acc'] is not None:
            rows.append(['image culture branch', model['train']['branch_image_acc'], model['eval']['branch_image_acc']]
                        + [model['eval']['branch_levels'].get(lv) for lv in levels] + ['n/a'])
        det = model['detections']
        rows.append(["morphology of the model's detections, nearest centroid", det['train']['image_acc'],
                     det['eval']['image_acc']] + [det['eval']['levels'].get(lv) for lv in levels] + ['n/a'])
    header = ['evidence', 'image acc. train', 'image acc. eval'] + [f'eval {lv}' for lv in levels] + \
        ['instance acc. train / eval']
    n = f"{morph['train']['n_images']} train / {morph['eval']['n_images']} eval single-culture images"
    return f'Image-level culture accuracy in % ({n}).\n\n' + markdown_table(header, rows) + '\n'


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('prepared', help='a prepared EVICAN folder (annotations/instances_{train,eval}.json, images/)')
    p.add_argument('--config')
    p.add_argument('--checkpoint')
    p.add_argument('--score-thr', type=float, default=0.3,
                   help="detections kept for the morphology of the model's detections (default 0.3)")
    p.add_argument('--out')
    args = p.parse_args(argv)
    if bool(args.config) != bool(args.checkpoint):
        p.error('--config and --checkpoint go together')
    for _, f in SPLITS:
        if not osp.isfile(osp.join(args.prepared, 'annotations', f)):
            p.error(f'{osp.join(args.prepared, "annotations", f)}: not found (a prepared EVICAN folder is needed)')
    try:
        morph = morphology_accuracy(args.prepared)
        model = model_accuracy(args.config, args.checkpoint, args.prepared, args.score_thr) if args.config else None
    except ValueError as e:  # bad data or a checkpoint of other classes: one line, nothing written
        raise SystemExit(f'culture_separability.py: error: {e}')
    text = report(morph, model)
    out = args.out or args.prepared
    atomic_write_text(osp.join(out, 'culture_separability.md'), text)
    atomic_write_json(osp.join(out, 'culture_separability.json'),
                      dict(morphology=morph, model=model, config=args.config, checkpoint=args.checkpoint))
    print(text)


if __name__ == '__main__':
    main()
