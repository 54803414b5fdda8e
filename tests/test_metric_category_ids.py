"""DifficultyCocoMetric on annotation files whose categories are listed in any order with gappy ids:
per-class rows against known APs and against a fresh pycocotools run per class (params.catIds=[c]),
with RLE ground truth, a dense image (more than 100 detections) and the stock AP@100 beside ours."""
import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from deepcis_mm.evaluation import DifficultyCocoMetric

# file order 12, 2, 7, 30, 5: neither sorted nor contiguous; pycocotools evaluates them as 2, 5, 7, 12, 30
CATS = [dict(id=12, name='HeLa cell', culture='HeLa', kind='cell'),
        dict(id=2, name='HeLa nucleus', culture='HeLa', kind='nucleus'),
        dict(id=7, name='MCF-7 cell', culture='MCF-7', kind='cell'),
        dict(id=30, name='MCF-7 nucleus', culture='MCF-7', kind='nucleus'),
        dict(id=5, name='SW-480 cell', culture='SW-480', kind='cell')]
CLASSES = [c['name'] for c in CATS]  # label order = file order (EvicanDataset, mmdet CocoDataset)
LABEL_OF = {c['id']: k for k, c in enumerate(CATS)}


def _rle(x, y, w, h, size):
    m = np.zeros((size, size), np.uint8, order='F')
    m[y:y + h, x:x + w] = 1
    rle = mask_utils.encode(m)
    rle['counts'] = rle['counts'].decode()
    return rle


def write_gt(path, images, anns, size, cats=CATS):
    """images: [(id, difficulty)]; anns: [(image_id, category_id, x, y, w, h)]. Every other annotation's
    mask is a compressed RLE, the others polygons; no bbox/area on some (as in EVICAN)."""
    out = []
    for n, (im, c, x, y, w, h) in enumerate(anns):
        a = dict(id=n + 1, image_id=im, category_id=c, iscrowd=0)
        if n % 2:
            a['segmentation'] = _rle(x, y, w, h, size)
        else:
            a['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
        a['bbox'], a['area'] = [x, y, w, h], float(w * h)
        out.append(a)
    coco = dict(categories=cats, annotations=out,
                images=[dict(id=i, file_name=f'{i}.jpg', width=size, height=size, difficulty=d) for i, d in images])
    with open(path, 'w') as f:
        json.dump(coco, f)
    return str(path)


def run_metric(ann_file, preds, size, classes=CLASSES, **kwargs):
    """preds: {image_id: [(label, score, x, y, w, h)]} -> (flat metrics, tables)."""
    metric = DifficultyCocoMetric(ann_file=ann_file, metric=['bbox', 'segm'], **kwargs)
    metric.dataset_meta = dict(classes=classes)
    samples = []
    for img_id, dets in preds.items():
        masks = np.zeros((len(dets), size, size), bool)
        for k, (_, _, x, y, w, h) in enumerate(dets):
            masks[k, y:y + h, x:x + w] = True
        samples.append(dict(img_id=img_id, ori_shape=(size, size), pred_instances=dict(
            bboxes=torch.tensor([[x, y, x + w, y + h] for _, _, x, y, w, h in dets], dtype=torch.float32).view(-1, 4),
            scores=torch.tensor([s for _, s, *_ in dets], dtype=torch.float32),
            labels=torch.tensor([lab for lab, *_ in dets], dtype=torch.int64),
            masks=torch.from_numpy(masks))))
    metric.process({}, samples)
    return metric.evaluate(len(samples)), metric.last_tables


def reference_dets(preds, iou, size, cat_of_label):
    dets = []
    for img_id, ds in preds.items():
        for lab, score, x, y, w, h in ds:
            d = dict(image_id=img_id, category_id=cat_of_label[lab], score=score)
            if iou == 'bbox':
                d['bbox'] = [x, y, w, h]
            else:
                d['segmentation'] = _rle(x, y, w, h, size)
            dets.append(d)
    return dets


def fresh_stats(coco, dt, iou, img_ids, cat_ids=None, max_dets=(100, 300, 1000)):
    """A fresh pycocotools COCOeval of ``cat_ids`` (all if None): its ``summarize()`` stats, with
    stats[0] replaced by AP at ``maxDets[2]`` (summarize() reads stats[0] at 100 detections and
    stats[1:6] at maxDets[2]), and the stock stats[0]."""
    E = COCOeval(coco, dt, iou)
    E.params.imgIds = img_ids
    if cat_ids is not None:
        E.params.catIds = cat_ids
    E.params.maxDets = list(max_dets)
    E.evaluate()
    E.accumulate()
    E.summarize()
    p = E.eval['precision'][:, :, :, 0, 2]
    stats = list(E.stats)
    stats[0] = float(p[p > -1].mean()) if (p > -1).any() else -1
    return stats, E.stats[0]


def test_known_per_class_ap_with_shuffled_gappy_ids(tmp_path):
    # HeLa cell (id 12): TP 0.9, FP 0.8, TP 0.7 of 2 objects -> AP (51 + 50 * 2/3) / 101;
    # HeLa nucleus (id 2): perfect; MCF-7 cell (id 7): its only object called SW-480 -> 0;
    # MCF-7 nucleus (id 30): perfect; SW-480 cell (id 5): one object, found at the 2nd rank -> 0.5
    size = 64
    gt = write_gt(tmp_path / 'gt.json', [(1, 1), (2, 1), (3, 2)], [
        (1, 12, 2, 2, 20, 20), (1, 2, 6, 6, 8, 8), (2, 12, 30, 30, 20, 20),
        (3, 7, 10, 10, 24, 24), (3, 30, 14, 14, 10, 10), (3, 5, 40, 40, 20, 20)], size)
    L = LABEL_OF
    preds = {1: [(L[12], 0.9, 2, 2, 20, 20), (L[12], 0.8, 40, 2, 20, 20), (L[2], 0.95, 6, 6, 8, 8)],
             2: [(L[12], 0.7, 30, 30, 20, 20)],
             3: [(L[5], 0.9, 10, 10, 24, 24), (L[30], 0.8, 14, 14, 10, 10), (L[5], 0.7, 40, 40, 20, 20)]}
    _, tables = run_metric(gt, preds, size)
    expected = {'HeLa cell': (51 + 50 * 2 / 3) / 101, 'HeLa nucleus': 1.0, 'MCF-7 cell': 0.0,
                'MCF-7 nucleus': 1.0, 'SW-480 cell': 0.5}
    for iou in ('bbox', 'segm'):
        rows = {r['cls']: r for r in tables[iou]['per_class'] if r['level'] == 'all'}
        assert {c: rows[c]['mAP'] for c in expected} == pytest.approx(expected, abs=1e-12)
        assert {c: rows[c]['category_id'] for c in CLASSES} == {c['name']: c['id'] for c in CATS}
        assert rows['SW-480 cell']['culture'] == 'SW-480' and rows['HeLa nucleus']['kind'] == 'nucleus'
        kinds = tables[iou]['per_kind']
        assert kinds['cell']['all']['mAP'] == pytest.approx(
            (expected['HeLa cell'] + expected['MCF-7 cell'] + expected['SW-480 cell']) / 3)
        assert kinds['nucleus']['all']['mAP'] == pytest.approx(1.0)
        assert tables[iou]['max_dets'] == 1000
    # culture confusion by category id: the MCF-7 cell called SW-480 is the only culture error
    culture = tables['culture']
    assert culture['cultures'] == ['HeLa', 'MCF-7', 'SW-480']
    assert culture['confusion']['all'] == [[3, 0, 0], [0, 1, 1], [0, 0, 1]]


def _random_case(tmp_path, seed, size=96, n_img=18, dense=True):
    """Random objects of every class at three levels, jittered detections (some of another class),
    false positives, and (``dense``) one image with 150 objects and 150 detections."""
    rng = np.random.default_rng(seed)
    images = [(i + 1, int(rng.integers(1, 4))) for i in range(n_img)]
    ids = [c['id'] for c in CATS]
    anns, preds = [], {}
    for img_id, _ in images:
        dets = []
        for _ in range(int(rng.integers(0, 8))):
            cid = int(rng.choice(ids))
            w, h = (int(v) for v in rng.integers(4, 30, 2))
            x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
            anns.append((img_id, cid, x, y, w, h))
            if rng.random() < 0.85:
                j = rng.integers(-3, 4, 4)
                jx, jy = int(np.clip(x + j[0], 0, size - 2)), int(np.clip(y + j[1], 0, size - 2))
                jw, jh = int(np.clip(w + j[2], 2, size - jx)), int(np.clip(h + j[3], 2, size - jy))
                lab = LABEL_OF[cid] if rng.random() < 0.75 else int(rng.integers(0, len(CATS)))
                dets.append((lab, float(rng.random()), jx, jy, jw, jh))
        for _ in range(int(rng.integers(0, 3))):
            w, h = (int(v) for v in rng.integers(3, 20, 2))
            dets.append((int(rng.integers(0, len(CATS))), float(rng.random()), int(rng.integers(0, size - w)),
                         int(rng.integers(0, size - h)), w, h))
        preds[img_id] = dets
    if dense:  # 15 x 10 grid of 6 px objects, most of one class: > 100 detections of it in one image
        img_id = n_img + 1
        images.append((img_id, 3))
        dets = []
        for n in range(150):
            x, y = 6 * (n % 15) + 2, 9 * (n // 15) + 2
            cid = ids[0] if n % 10 else ids[n // 10 % len(ids)]
            anns.append((img_id, cid, x, y, 5, 5))
            if n % 7:
                dets.append((LABEL_OF[cid], float(rng.random()), x, y, 5, 5))
            dets.append((int(rng.integers(0, len(CATS))), float(rng.random()), x + 2, y + 1, 5, 5))
        preds[img_id] = dets
        assert len(dets) > 100
    return write_gt(tmp_path / f'gt{seed}.json', images, anns, size), preds, images


@pytest.mark.parametrize('seed', [0, 1])
def test_per_class_equals_fresh_pycocotools_per_class(tmp_path, seed):
    size = 96
    gt, preds, images = _random_case(tmp_path, seed, size)
    flat, tables = run_metric(gt, preds, size)
    coco = COCO(gt)
    cat_of_label = [c['id'] for c in CATS]
    n_checked = 0
    for iou in ('bbox', 'segm'):
        dt = coco.loadRes(reference_dets(preds, iou, size, cat_of_label))
        rows = {(r['category_id'], r['level']): r for r in tables[iou]['per_class']}
        for lvl in ('all', 1, 2, 3):
            ids = [i for i, d in images if lvl == 'all' or d == lvl]
            for c in CATS:
                ref, _ = fresh_stats(coco, dt, iou, ids, [c['id']])
                ours = rows[c['id'], str(lvl)]
                assert ours['cls'] == c['name']
                for n, name in enumerate(('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')):
                    if ref[n] == -1:
                        assert ours[name] is None, (iou, lvl, c, name)
                    else:
                        assert ours[name] == pytest.approx(ref[n], abs=1e-9), (iou, lvl, c, name)
                        n_checked += 1
            # the level mean at our limit, and the stock summarize() AP (at 100) of pycocotools'
            # default limits (1, 10, 100) and of mmdet's (100, 300, 1000): the same number
            ref, stock_mmdet = fresh_stats(coco, dt, iou, ids)
            _, stock = fresh_stats(coco, dt, iou, ids, max_dets=(1, 10, 100))
            assert stock == pytest.approx(stock_mmdet, abs=1e-12)
            level = tables[iou]['levels'][str(lvl)]
            assert (level['mAP'] is None) if ref[0] == -1 else level['mAP'] == pytest.approx(ref[0], abs=1e-9)
            ours = level['mAP_100dets']
            assert (ours is None) if stock == -1 else ours == pytest.approx(stock, abs=1e-9)
        # the dense image (level 3) makes the limit matter: AP@100 < AP@1000 there
        lv3 = tables[iou]['levels']['3']
        assert lv3['mAP_100dets'] < lv3['mAP'] - 1e-3
        assert flat[f'coco/{iou}_mAP_100dets'] == pytest.approx(tables[iou]['levels']['all']['mAP_100dets'])
    assert n_checked > 50
    # the classes are not all alike: a row from another class would be caught
    segm_all = [r['mAP'] for r in tables['segm']['per_class'] if r['level'] == 'all']
    assert len({round(v, 6) for v in segm_all}) == len(CATS)


def test_table_and_csv_state_the_detection_limit(tmp_path):
    from deepcis_mm.engine.hooks.ap_table_hook import per_class_rows, summary_markdown
    size = 96
    gt, preds, _ = _random_case(tmp_path, 3, size)
    _, tables = run_metric(gt, preds, size, proposal_nums=(100, 1000, 3000))
    assert tables['bbox']['max_dets'] == 3000 and tables['bbox']['stock_max_dets'] == 100
    text = summary_markdown(tables)
    assert 'up to 3000 detections per image' in text and 'Det. mAP@100' in text
    rows = per_class_rows(tables)
    assert rows[0][-2:] == ['category_id', 'max_dets'] and {r[-1] for r in rows[1:]} == {3000}
    assert {r[-2] for r in rows[1:]} == {c['id'] for c in CATS}
    # at the stock limit itself there is nothing to add
    _, tables = run_metric(gt, preds, size, proposal_nums=(1, 10, 100))
    assert tables['segm']['max_dets'] == 100 and tables['segm']['stock_max_dets'] is None
    assert 'mAP_100dets' not in tables['segm']['levels']['all']


def test_class_missing_from_the_annotation_file_is_an_error(tmp_path):
    gt = write_gt(tmp_path / 'gt.json', [(1, 1)], [(1, 12, 2, 2, 20, 20)], 64)
    with pytest.raises(ValueError, match=r'gt\.json: the classes \[\'Vero cell\'\] are missing'):
        run_metric(gt, {1: [(0, 0.9, 2, 2, 20, 20)]}, 64, classes=CLASSES + ['Vero cell'])


def test_culture_from_class_names_when_the_file_has_no_culture_fields(tmp_path):
    # categories without culture/kind fields and a dataset_meta with only classes: the class table
    # (class_table, parsed names) gives culture and kind
    cats = [dict(id=3, name='HeLa_cell'), dict(id=1, name='MCF-7_cell')]
    classes = [c['name'] for c in cats]
    gt = write_gt(tmp_path / 'gt.json', [(1, 1), (2, 1)],
                  [(1, 3, 2, 2, 20, 20), (1, 3, 30, 30, 20, 20), (2, 1, 10, 10, 24, 24)], 64, cats=cats)
    # image 1: one HeLa cell right, one called MCF-7; image 2: the MCF-7 cell right
    preds = {1: [(0, 0.9, 2, 2, 20, 20), (1, 0.4, 30, 30, 20, 20)], 2: [(1, 0.8, 10, 10, 24, 24)]}
    flat, tables = run_metric(gt, preds, 64, classes=classes)
    assert [(r['culture'], r['kind']) for r in tables['segm']['per_class'] if r['level'] == 'all'] == \
        [('HeLa', 'cell'), ('MCF-7', 'cell')]
    assert tables['culture']['levels']['all'] == dict(accuracy=2 / 3, n_matched=3)
    assert tables['image_culture']['accuracy'] == 1.0 and tables['image_culture']['source'] == 'detection vote'
    assert flat['coco/culture_acc'] == pytest.approx(2 / 3)


def test_class_name_without_culture_and_kind_is_an_error(tmp_path):
    cats = [dict(id=1, name='HeLa_cell'), dict(id=2, name='blob')]
    gt = write_gt(tmp_path / 'gt.json', [(1, 1)], [(1, 1, 2, 2, 20, 20)], 64, cats=cats)
    with pytest.raises(ValueError, match=r"unknown culture/kind of class\(es\) 'blob'"):
        run_metric(gt, {1: [(0, 0.9, 2, 2, 20, 20)]}, 64, classes=['HeLa_cell', 'blob'])
