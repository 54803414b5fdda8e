"""DifficultyCocoMetric: known APs by construction, and equality with fresh pycocotools per level."""
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from deepcis_mm.evaluation import DifficultyCocoMetric

CLASSES = ['HeLa cell', 'HeLa nucleus', 'MCF-7 cell', 'MCF-7 nucleus']
CATS = [dict(id=i + 1, name=n, culture=n.split()[0], kind=n.split()[1]) for i, n in enumerate(CLASSES)]
SIZE = 64


def _poly(x, y, w, h):
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def write_gt(path, images, anns):
    """images: [(id, difficulty)], anns: [(image_id, category_id, x, y, w, h)] (square masks)."""
    coco = dict(categories=CATS,
                images=[dict(id=i, file_name=f'{i}.jpg', width=SIZE, height=SIZE, difficulty=d) for i, d in images],
                annotations=[dict(id=n + 1, image_id=im, category_id=c, bbox=[x, y, w, h], area=float(w * h),
                                  segmentation=_poly(x, y, w, h), iscrowd=0)
                             for n, (im, c, x, y, w, h) in enumerate(anns)])
    with open(path, 'w') as f:
        json.dump(coco, f)
    return str(path)


def run_metric(ann_file, preds, **kwargs):
    """preds: {image_id: [(label, score, x, y, w, h)]} -> metric results (boxes and box-shaped masks)."""
    from test_metric_category_ids import run_metric as run_metric_sized
    return run_metric_sized(ann_file, preds, SIZE, CLASSES, **kwargs)


def coco_ap_of_ranked_hits(hits, n_gt):
    """COCO 101-point interpolated AP for detections ranked by score (True = match)."""
    tp = np.cumsum(hits)
    prec, rec = tp / np.arange(1, len(hits) + 1), tp / n_gt
    prec = np.maximum.accumulate(prec[::-1])[::-1]
    out = []
    for r in np.linspace(0, 1, 101):
        i = np.searchsorted(rec, r, side='left')
        out.append(prec[i] if i < len(prec) else 0.0)
    return float(np.mean(out))


@pytest.fixture
def known(tmp_path):
    # level 1: images 1, 2 (HeLa); level 2: image 3 (MCF-7 only); level 3: no image at all
    gt = write_gt(tmp_path / 'gt.json', [(1, 1), (2, 1), (3, 2)], [
        (1, 1, 2, 2, 20, 20), (1, 2, 6, 6, 8, 8), (2, 1, 30, 30, 20, 20),
        (3, 3, 10, 10, 24, 24), (3, 4, 14, 14, 10, 10)])
    preds = {
        # HeLa cell: TP 0.9, FP 0.8 (nothing there), TP 0.7 -> hits [1, 0, 1] of 2 ground truths
        1: [(0, 0.9, 2, 2, 20, 20), (0, 0.8, 40, 2, 20, 20), (1, 0.95, 6, 6, 8, 8)],
        2: [(0, 0.7, 30, 30, 20, 20)],
        # MCF-7: the cell found but called HeLa (culture error), the nucleus right
        3: [(0, 0.9, 10, 10, 24, 24), (3, 0.8, 14, 14, 10, 10)],
    }
    return gt, preds


def test_known_ap_by_construction(known):
    gt, preds = known
    flat, tables = run_metric(gt, preds)
    expected_hela_cell = coco_ap_of_ranked_hits([1, 0, 1], 2)
    assert expected_hela_cell == pytest.approx((51 + 50 * 2 / 3) / 101)
    for iou in ('bbox', 'segm'):
        rows = {(r['cls'], r['level']): r for r in tables[iou]['per_class']}
        assert rows['HeLa cell', '1']['mAP'] == pytest.approx(expected_hela_cell, abs=1e-12)
        assert rows['HeLa nucleus', '1']['mAP'] == pytest.approx(1.0)
        assert (rows['HeLa cell', '1']['n_images'], rows['HeLa cell', '1']['n_instances']) == (2, 2)
        # no HeLa ground truth at level 2: n/a, although a HeLa detection is there (a false positive)
        assert rows['HeLa cell', '2']['mAP'] is None and rows['HeLa cell', '2']['n_instances'] == 0
        assert rows['MCF-7 cell', '2']['mAP'] == pytest.approx(0.0)  # its only object was called HeLa
        assert rows['MCF-7 nucleus', '2']['mAP'] == pytest.approx(1.0)
        lv = tables[iou]['levels']
        assert lv['1']['mAP'] == pytest.approx((expected_hela_cell + 1.0) / 2)  # n/a classes left out
        assert lv['2']['mAP'] == pytest.approx(0.5)
        assert lv['3']['mAP'] is None and lv['3']['n_images'] == 0  # a level without images
        assert np.isnan(flat[f'coco/{iou}_L3_mAP'])
        # class-agnostic: every object found at IoU 1, one false positive ranked 3rd of 4 in image 1
        assert tables[iou]['agnostic']['2']['mAP'] == pytest.approx(1.0)
        assert tables[iou]['per_kind']['cell']['1']['mAP'] == pytest.approx(expected_hela_cell)
        assert tables[iou]['per_kind']['nucleus']['2']['mAP'] == pytest.approx(1.0)
    culture = tables['culture']
    assert culture['levels']['all'] == dict(accuracy=pytest.approx(4 / 5), n_matched=5)
    assert culture['levels']['2'] == dict(accuracy=pytest.approx(1 / 2), n_matched=2)
    assert culture['cultures'] == ['HeLa', 'MCF-7']
    assert culture['confusion']['all'] == [[3, 0], [1, 1]]  # rows: true culture, columns: predicted
    assert flat['coco/culture_acc'] == pytest.approx(0.8)


def test_recall_and_precision_at_iou50(known):
    """Recall at IoU 0.5 (pycocotools' recall array) and precision of the detections scoring >= 0.5."""
    gt, preds = known
    preds = dict(preds)
    preds[2] = preds[2] + [(1, 0.3, 50, 50, 8, 8)]  # a low-score false positive: below the 0.5 cut
    flat, tables = run_metric(gt, preds)
    for iou in ('bbox', 'segm'):
        lv, ag = tables[iou]['levels'], tables[iou]['agnostic']
        assert lv['1']['AR_50'] == pytest.approx(1.0)  # both HeLa classes found
        assert lv['2']['AR_50'] == pytest.approx(0.5)  # MCF-7 cell called HeLa: recall 0; nucleus 1
        assert lv['3']['AR_50'] is None
        # class-agnostic: every object matched; level 1 keeps 4 detections >= 0.5, 3 of them hits
        assert ag['1']['AR_50'] == pytest.approx(1.0) and ag['all']['AR_50'] == pytest.approx(1.0)
        assert ag['1']['precision_50'] == pytest.approx(3 / 4)
        assert ag['1']['recall_50'] == pytest.approx(1.0)
        assert ag['all']['precision_50'] == pytest.approx(5 / 6)
        assert ag['3']['precision_50'] is None
        assert flat[f'coco/{iou}_agnostic_precision_50'] == pytest.approx(5 / 6)
        assert flat[f'coco/{iou}_L2_AR_50'] == pytest.approx(0.5)
    # a detection limit list of another length (summary limit: the third, 2): the 2 best per image
    _, tables = run_metric(gt, preds, proposal_nums=(1, 1, 2, 100))
    ag = tables['bbox']['agnostic']
    assert ag['1']['precision_50'] == pytest.approx(3 / 3)  # image 1 keeps 0.95 and 0.9, image 2 its 0.7
    assert ag['1']['AR_50'] == pytest.approx(1.0)


def _random_case(tmp_path, seed, n_img=24):
    rng = np.random.default_rng(seed)
    images = [(i + 1, int(rng.integers(1, 4))) for i in range(n_img)]
    anns, preds = [], {}
    for img_id, _ in images:
        culture = int(rng.integers(0, 2))
        dets = []
        for _ in range(int(rng.integers(0, 6))):
            kind = int(rng.integers(0, 2))
            w, h = (int(v) for v in rng.integers(3, 30, 2))
            x, y = int(rng.integers(0, SIZE - w)), int(rng.integers(0, SIZE - h))
            anns.append((img_id, 2 * culture + kind + 1, x, y, w, h))
            if rng.random() < 0.8:  # a jittered detection, sometimes of the wrong culture
                j = rng.integers(-3, 4, 4)
                jx, jy = int(np.clip(x + j[0], 0, SIZE - 2)), int(np.clip(y + j[1], 0, SIZE - 2))
                jw, jh = int(np.clip(w + j[2], 2, SIZE - jx)), int(np.clip(h + j[3], 2, SIZE - jy))
                lab = 2 * (culture if rng.random() < 0.8 else 1 - culture) + kind
                dets.append((lab, float(rng.random()), jx, jy, jw, jh))
        for _ in range(int(rng.integers(0, 3))):  # false positives
            w, h = (int(v) for v in rng.integers(3, 20, 2))
            dets.append((int(rng.integers(0, 4)), float(rng.random()), int(rng.integers(0, SIZE - w)),
                         int(rng.integers(0, SIZE - h)), w, h))
        preds[img_id] = dets
    return write_gt(tmp_path / f'gt{seed}.json', images, anns), preds, images


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_every_level_equals_fresh_pycocotools(tmp_path, seed):
    gt, preds, images = _random_case(tmp_path, seed)
    _, tables = run_metric(gt, preds)
    coco = COCO(gt)
    for iou in ('bbox', 'segm'):
        dets = []
        for img_id, ds in preds.items():
            for lab, score, x, y, w, h in ds:
                d = dict(image_id=img_id, category_id=lab + 1, score=score)
                if iou == 'bbox':
                    d['bbox'] = [x, y, w, h]
                else:
                    m = np.zeros((SIZE, SIZE), np.uint8, order='F')
                    m[y:y + h, x:x + w] = 1
                    rle = mask_utils.encode(m)
                    rle['counts'] = rle['counts'].decode()
                    d['segmentation'] = rle
                dets.append(d)
        dt = coco.loadRes(dets)
        for lvl in ('all', 1, 2, 3):
            ids = [i for i, d in images if lvl == 'all' or d == lvl]
            for use_cats, key in ((1, 'levels'), (0, 'agnostic')):
                E = COCOeval(coco, dt, iou)
                E.params.imgIds = ids
                E.params.maxDets = [100, 300, 1000]
                E.params.useCats = use_cats
                E.evaluate()
                E.accumulate()
                E.summarize()
                ours = tables[iou][key][str(lvl)]
                for n, name in enumerate(('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')):
                    ref = E.stats[n]
                    if ref == -1:
                        assert ours[name] is None, (iou, lvl, key, name)
                    else:
                        assert abs(ours[name] - ref) < 1e-9, (iou, lvl, key, name, ours[name], ref)


def test_metric_requires_ann_file():
    with pytest.raises(ValueError, match='ann_file is required'):
        DifficultyCocoMetric(ann_file=None)


def test_ap_table_hook_writes_table1_and_per_class(known, tmp_path):
    import csv
    from types import SimpleNamespace

    from mmengine.logging import MMLogger

    from deepcis_mm.engine.hooks import APTableHook
    gt, preds = known
    metric = DifficultyCocoMetric(ann_file=gt, metric=['bbox', 'segm'])
    metric.dataset_meta = dict(classes=CLASSES)
    flat, tables = run_metric(gt, preds)
    metric.last_tables = tables
    runner = SimpleNamespace(work_dir=str(tmp_path), iter=1500, logger=MMLogger.get_current_instance(),
                             val_loop=SimpleNamespace(evaluator=SimpleNamespace(metrics=[metric])))
    APTableHook().after_val_epoch(runner, flat)
    out = tmp_path / 'ap_tables' / 'iter_1500'
    assert sorted(p.name for p in out.iterdir()) == ['culture_confusion.png', 'metrics.json', 'per_class.csv',
                                                     'per_class_ap.png', 'table1.csv', 'table1.md']
    rows = list(csv.reader(open(out / 'table1.csv')))
    assert rows[0][:3] == ['Difficulty', 'Det. mAP', 'Det. mAP50'] and len(rows[0]) == 13
    assert [r[0] for r in rows[1:]] == ['Level 1 (easy)', 'Level 2 (medium)', 'Level 3 (difficult)', 'All levels']
    assert rows[2][1] == '50.00' and rows[3][1] == 'n/a'  # level 2 bbox mAP; level 3 has no images
    assert rows[1][7] == f'{100 * tables["segm"]["levels"]["1"]["mAP"]:.2f}'
    per_class = list(csv.DictReader(open(out / 'per_class.csv')))
    assert len(per_class) == 2 * 4 * len(CLASSES)
    hela2 = [r for r in per_class if r['class'] == 'HeLa cell' and r['level'] == '2' and r['iou_type'] == 'segm']
    assert hela2[0]['AP'] == 'n/a' and hela2[0]['n_instances'] == '0'
    saved = json.load(open(out / 'metrics.json'))
    assert saved['metrics']['coco/bbox_L3_mAP'] is None  # NaN written as null
    assert '| Level 2 (medium) | 50.00 |' in (out / 'table1.md').read_text()
    assert not [p for p in out.iterdir() if p.name.startswith('.tmp')]


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
@pytest.mark.parametrize('iou_type,use_cats', [('bbox', 1), ('segm', 1), ('bbox', 0)])
def test_fast_cocoeval_matches_pycocotools_exactly(tmp_path, seed, iou_type, use_cats):
    """Every per-image matching record of FastCOCOeval equals pycocotools' (crowds, ties, area ranges)."""
    from deepcis_mm.evaluation import FastCOCOeval
    rng = np.random.default_rng(seed)
    gt_file, preds, images = _random_case(tmp_path, seed, n_img=12)
    coco_json = json.load(open(gt_file))
    for ann in coco_json['annotations'][::7]:  # some crowd regions
        ann['iscrowd'] = 1
    for ann in coco_json['annotations'][1::9]:  # duplicate ground truths: exact IoU ties
        coco_json['annotations'].append(dict(ann, id=10000 + ann['id']))
    json.dump(coco_json, open(gt_file, 'w'))
    coco = COCO(gt_file)
    dets = [dict(image_id=i, category_id=lab + 1, score=float(np.round(score, 1)), bbox=[x, y, w, h])
            for i, ds in preds.items() for lab, score, x, y, w, h in ds]  # rounded scores: ties
    dets += [dict(d, score=d['score']) for d in dets[::5]]  # duplicate detections
    dt = coco.loadRes(dets)
    if iou_type == 'segm':
        for ann in dt.anns.values():
            ann.pop('segmentation', None)
        dt = coco.loadRes([dict(image_id=d['image_id'], category_id=d['category_id'], score=d['score'],
                                segmentation=mask_utils.frPyObjects(
                                    [[d['bbox'][0], d['bbox'][1], d['bbox'][0] + d['bbox'][2], d['bbox'][1],
                                      d['bbox'][0] + d['bbox'][2], d['bbox'][1] + d['bbox'][3], d['bbox'][0],
                                      d['bbox'][1] + d['bbox'][3]]], SIZE, SIZE)[0]) for d in dets])
    evals = []
    for cls in (COCOeval, FastCOCOeval):
        E = cls(coco, dt, iou_type)
        E.params.useCats = use_cats
        E.params.maxDets = [1, 3, 100]
        E.evaluate()
        evals.append(E.evalImgs)
    assert len(evals[0]) == len(evals[1]) and rng is not None
    n_matched = 0
    for a, b in zip(*evals):
        assert (a is None) == (b is None)
        if a is None:
            continue
        for key in ('dtIds', 'gtIds', 'dtScores', 'aRng', 'maxDet'):
            assert a[key] == b[key]
        for key in ('dtMatches', 'gtMatches', 'gtIgnore', 'dtIgnore'):
            np.testing.assert_array_equal(a[key], b[key])
        n_matched += int((a['dtMatches'] > 0).sum())
    assert n_matched > 0
