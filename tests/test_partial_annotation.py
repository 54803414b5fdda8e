"""Partial annotation remedies: ignore regions from the image (known answer on a hand-made image), the
known-background assigner (never a negative on unknown foreground), and the configs training a step."""
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmdet.structures.bbox import HorizontalBoxes
from mmdet.structures.mask import BitmapMasks, PolygonMasks
from mmengine.structures import InstanceData
from test_models import ROOT, build_model

from deepcis_mm.datasets.transforms import UnannotatedForegroundToIgnore, unannotated_foreground
from deepcis_mm.models import KnownBackgroundAssigner

CONFIGS = {
    'ignore': 'configs/partial_annotation/deepcis_s14-dcnv2_fpn_demo_synthetic-evican_ignore-unannotated.py',
    'known-background': 'configs/partial_annotation/deepcis_s14-dcnv2_fpn_demo_synthetic-evican_known-background.py',
}


def _disc(h, w, cx, cy, r):
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def hand_made(seed=0):
    """A 120x160 flat noisy field with three textured 'cells' (radius 10): the ones at (30, 30) and
    (130, 90) are annotated, the one at (80, 60) is not."""
    rng = np.random.default_rng(seed)
    h, w = 120, 160
    img = 120 + rng.normal(0, 1.0, (h, w))
    cells = [(30, 30), (80, 60), (130, 90)]
    for cx, cy in cells:
        m = _disc(h, w, cx, cy, 10)
        img[m] += rng.normal(0, 25, m.sum())  # granular cytoplasm
    img = np.clip(img, 0, 255).astype(np.uint8)
    masks = np.stack([_disc(h, w, cx, cy, 10) for cx, cy in (cells[0], cells[2])]).astype(np.uint8)
    return np.repeat(img[..., None], 3, 2), masks, _disc(h, w, 80, 60, 10)


def test_unannotated_foreground_finds_exactly_the_unannotated_cell():
    img, masks, unannotated = hand_made()
    blobs, info = unannotated_foreground(img, masks)
    assert len(blobs) == 1
    blob = blobs[0]
    ys, xs = np.nonzero(blob)
    # the blob is the unannotated cell (plus at most the contrast window's reach around it)
    assert (blob & unannotated).sum() >= 0.95 * unannotated.sum()
    assert 62 <= xs.min() <= 71 and 89 <= xs.max() <= 98 and 42 <= ys.min() <= 51 and 69 <= ys.max() <= 78
    assert info['radius'] == pytest.approx(np.sqrt(masks[0].sum() / np.pi))
    # nothing near the annotated cells, nothing on the flat background
    near = cv2.dilate(masks.max(0), np.ones((21, 21), np.uint8)).astype(bool)
    assert not (blob & near).any()
    # no annotated object in the image: no calibration, no ignore region
    assert unannotated_foreground(img, np.zeros((0, 120, 160), np.uint8))[0] == []


def test_fully_annotated_image_gets_no_ignore_region():
    img, masks, unannotated = hand_made()
    all_masks = np.concatenate([masks, unannotated[None].astype(np.uint8)])
    assert unannotated_foreground(img, all_masks)[0] == []


@pytest.mark.parametrize('poly', [False, True])
def test_transform_appends_ignored_instances(poly):
    img, masks, unannotated = hand_made()
    h, w = masks.shape[1:]
    if poly:
        gt_masks = PolygonMasks([[cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0]
                                  .reshape(-1).astype(float)] for m in masks], h, w)
    else:
        gt_masks = BitmapMasks(masks, h, w)
    boxes = np.array([[20, 20, 41, 41], [120, 80, 141, 101]], np.float32)
    results = dict(img=img, gt_masks=gt_masks, gt_bboxes=HorizontalBoxes(boxes),
                   gt_bboxes_labels=np.array([3, 5]), gt_ignore_flags=np.array([False, False]))
    out = UnannotatedForegroundToIgnore()(results)
    assert out['gt_ignore_flags'].tolist() == [False, False, True]
    assert out['gt_bboxes_labels'].tolist() == [3, 5, 0]
    assert len(out['gt_bboxes']) == len(out['gt_masks']) == 3
    assert type(out['gt_masks']) is type(gt_masks)
    x1, y1, x2, y2 = out['gt_bboxes'].tensor[2].tolist()
    assert x1 <= 70 and y1 <= 50 and x2 >= 91 and y2 >= 71 and x2 - x1 < 40 and y2 - y1 < 40
    ignored = out['gt_masks'].to_ndarray()[2].astype(bool)
    assert (ignored & unannotated).sum() >= 0.9 * unannotated.sum()
    np.testing.assert_array_equal(out['gt_bboxes'].tensor[:2].numpy(), boxes)


def test_known_background_assigner_never_draws_negatives_from_unknown_foreground():
    # a 100x100 image: one annotated object at (10..30, 10..30); unknown foreground at (60..90, 60..90)
    unknown = np.zeros((100, 100), np.uint8)
    unknown[60:90, 60:90] = 1
    gt = InstanceData(bboxes=torch.tensor([[10., 10., 30., 30.]]), labels=torch.tensor([2]))
    ignore = InstanceData(bboxes=torch.tensor([[60., 60., 90., 90.]]), labels=torch.tensor([0]),
                          masks=BitmapMasks(unknown[None], 100, 100))
    g = torch.arange(0, 100, 5.0)
    xy = torch.stack(torch.meshgrid(g, g, indexing='xy'), -1).reshape(-1, 2)
    priors = torch.cat([xy, xy + 12], 1)  # 12x12 boxes on a 5 px grid
    priors = torch.cat([priors, torch.tensor([[10., 10., 30., 30.], [11., 11., 31., 31.]])])
    kw = dict(pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0.5, match_low_quality=False)
    plain = MaxIoU(**kw).assign(InstanceData(priors=priors), gt, ignore)
    known = KnownBackgroundAssigner(max_unknown_frac=0.1, **kw).assign(InstanceData(priors=priors), gt, ignore)
    frac = np.array([unknown[int(y1):int(np.ceil(y2)), int(x1):int(np.ceil(x2))].sum() / ((x2 - x1) * (y2 - y1))
                     for x1, y1, x2, y2 in priors.tolist()])
    neg = (known.gt_inds == 0).numpy()
    assert neg.sum() > 100 and not (neg & (frac > 0.1)).any()
    # priors the plain assigner called background and that touch unknown foreground are now ignored
    assert ((plain.gt_inds == 0).numpy() & (frac > 0.1)).sum() > 10
    assert (known.gt_inds[(frac > 0.1)] == -1).all()
    # positives are untouched, and a negative on known background stays a negative
    assert torch.equal(known.gt_inds > 0, plain.gt_inds > 0) and (known.gt_inds > 0).sum() == 2
    assert known.gt_inds[0] == 0  # the prior at (0, 0, 12, 12)
    # without ignored instances it is the upstream assigner
    assert torch.equal(KnownBackgroundAssigner(**kw).assign(InstanceData(priors=priors), gt).gt_inds,
                       MaxIoU(**kw).assign(InstanceData(priors=priors), gt).gt_inds)


def MaxIoU(**kw):
    from mmdet.models.task_modules.assigners import MaxIoUAssigner
    return MaxIoUAssigner(**kw)


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_remedy_config_trains_a_step_on_partial_data(name, prepared, monkeypatch):
    """The config builds; its train pipeline on partially annotated synthetic data yields ignored
    instances; one loss step with the real pipeline output is finite and backpropagates."""
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate
    path = osp.join(ROOT, CONFIGS[name])
    model, cfg = build_model(path)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.update(data_root=prepared + '/', pipeline=[
        dict(s, scales=[(256, 128)]) if s['type'] == 'RandomChoiceResize' else s for s in ds_cfg.pipeline])
    dataset = DATASETS.build(ds_cfg)
    samples = [dataset[i] for i in range(len(dataset))]
    n_ignored = [len(s['data_samples'].ignored_instances) for s in samples]
    assert sum(n_ignored) > 0, n_ignored
    batch = pseudo_collate(sorted(samples, key=lambda s: -len(s['data_samples'].ignored_instances))[:2])
    # record what the assigners of the RPN and the three stages receive and make of the regions
    from mmdet.models.task_modules.assigners import MaxIoUAssigner
    seen = []
    upstream = MaxIoUAssigner.assign

    def spy(self, pred_instances, gt_instances, gt_instances_ignore=None, **kw):
        result = upstream(self, pred_instances, gt_instances, gt_instances_ignore, **kw)
        seen.append((type(self).__name__, 0 if gt_instances_ignore is None else len(gt_instances_ignore),
                     int((result.gt_inds == -1).sum())))
        return result
    monkeypatch.setattr(MaxIoUAssigner, 'assign', spy)
    torch.manual_seed(0)
    model.train()
    losses = model(**model.data_preprocessor(batch, True), mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    # 2 images x (RPN + 3 cascade stages), each with the image's ignore regions; ignore_iof_thr drops
    # priors inside them (upstream's -1), the known-background assigner only negatives (after upstream)
    assert len(seen) == 8 and all(n > 0 for _, n, _ in seen[:2])
    if name == 'ignore':
        assert sum(k for _, _, k in seen) > 0
    base = cfg.model.train_cfg
    if name == 'ignore':
        assert base.rpn.assigner.ignore_iof_thr > 0 and all(s.assigner.ignore_iof_thr > 0 for s in base.rcnn)
    else:
        assert base.rpn.assigner.type == 'KnownBackgroundAssigner'
        assert all(s.assigner.type == 'KnownBackgroundAssigner' for s in base.rcnn)


def _script():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'partial_annotation', osp.join(ROOT, 'scripts', 'analysis_tools', 'partial_annotation.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_comparison_variants_use_one_eval_and_their_own_train_data():
    mod = _script()
    data = dict(full='F/', partial='P/', blurred='B/', oracle='O')
    for name, (config, kind) in mod.VARIANTS.items():
        assert osp.isfile(osp.join(ROOT, config)), config
        opts = mod.variant_options(kind, data, seed=3)
        assert opts[-1] == 'randomness.seed=3'
        train_root = 'F/' if kind == 'oracle' else data[kind]
        assert f'train_dataloader.dataset.data_root={train_root}' in opts
        # every variant is evaluated on the same (fully annotated) eval split
        assert 'test_evaluator.ann_file=P/annotations/instances_eval.json' in opts
        assert 'test_dataloader.dataset.data_root=P/' in opts
    assert mod.VARIANTS['full'][1] == 'full' and mod.VARIANTS['naive'] == (mod.DEMO, 'partial')
    oracle = mod.variant_options('oracle', data)
    assert f'train_dataloader.dataset.ann_file={osp.abspath("O/instances_train.json")}' in oracle
    assert sum('assigner.type=KnownBackgroundAssigner' in o for o in oracle) == 4
    assert mod.run_name('naive', 0) == 'naive' and mod.run_name('naive', 2) == 'naive_seed2'


def test_oracle_annotations_mark_exactly_the_objects_the_partial_file_leaves_out(tmp_path):
    """Known answer: of three objects (two categories, two images) the partial file keeps two; the
    oracle file is the full one with the third marked iscrowd, ids and order kept."""
    import json
    mod = _script()
    seg = [[[1, 1, 9, 1, 9, 9]], [[2, 2, 8, 2, 8, 8]], [[1, 1, 9, 1, 9, 9]]]
    full = dict(images=[dict(id=1, file_name='a.jpg'), dict(id=2, file_name='b.jpg')],
                categories=[dict(id=5, name='HeLa_cell'), dict(id=9, name='HeLa_nucleus')],
                annotations=[dict(id=i + 1, image_id=im, category_id=c, segmentation=sg, iscrowd=0)
                             for i, (im, c, sg) in enumerate([(1, 5, seg[0]), (1, 9, seg[1]), (2, 5, seg[2])])])
    # the partial file numbers images, categories and annotations its own way
    part = dict(images=[dict(id=7, file_name='b.jpg'), dict(id=8, file_name='a.jpg')],
                categories=[dict(id=1, name='HeLa_nucleus'), dict(id=2, name='HeLa_cell')],
                annotations=[dict(id=1, image_id=8, category_id=2, segmentation=seg[0], iscrowd=0),
                             dict(id=2, image_id=7, category_id=2, segmentation=seg[2], iscrowd=0)])
    paths = [str(tmp_path / n) for n in ('full.json', 'part.json', 'out/oracle.json')]
    for path, coco in zip(paths, (full, part)):
        with open(path, 'w') as f:
            json.dump(coco, f)
    assert mod.oracle_annotations(*paths) == (2, 1)
    with open(paths[2]) as f:
        out = json.load(f)
    assert [(a['id'], a['iscrowd']) for a in out['annotations']] == [(1, 0), (2, 1), (3, 0)]
    part['annotations'][0]['segmentation'] = [[0, 0, 5, 0, 5, 5]]  # an object the full file lacks
    with open(paths[1], 'w') as f:
        json.dump(part, f)
    with pytest.raises(ValueError, match='1 object'):
        mod.oracle_annotations(*paths)


def test_plan_seeds_per_variant_and_errors():
    mod = _script()
    assert mod.plan_seeds('naive,oracle@0+2,full', '0,1') == dict(naive=[0, 1], oracle=[0, 2], full=[0, 1])
    assert mod.plan_seeds('ignore@3', '0') == dict(ignore=[3])
    for variants, seeds, flag in (('naive', 'a', '--train-seeds'), ('naive', '-1', '--train-seeds'),
                                  ('naive@', '0', '--variants naive@'), ('orcle', '0', '--variants: unknown')):
        with pytest.raises(ValueError, match=flag):
            mod.plan_seeds(variants, seeds)


class _Run:
    def __init__(self, segm, seed=0, agn=0.4):
        lv = {k: dict(mAP=segm) for k in ('1', '2', '3', 'all')}
        self.seed = seed
        self.tables = dict(bbox=dict(levels=lv, agnostic=dict(all=dict(mAP=0.5, AR_50=0.7))),
                           segm=dict(levels=lv, agnostic=dict(all=dict(mAP=agn, AR_50=0.6, precision_50=0.9))))


def _rows(text):
    return {line.split(' | ')[0].strip('| '): line for line in text.splitlines() if line.startswith('| ')}


def test_comparison_summary_gap_recovered():
    mod = _script()
    text = mod.summary_table(dict(full=[_Run(0.30, agn=0.50)], naive=[_Run(0.20, agn=0.40)],
                                  ignore=[_Run(0.26, agn=0.49)]), 0.8)
    rows = _rows(text)
    # segm (26 - 20) / (30 - 20); class-agnostic segm (49 - 40) / (50 - 40)
    assert '| 50.0 | 49.0 | 70.0 | 60.0 | 90.0 | 60 % | 90 % |' in rows['ignore'] and 'gap 10.0 points' in text
    assert rows['full'].endswith('| n/a | n/a |') and 'per training seed' not in text


def test_comparison_summary_over_seeds_uses_the_means():
    mod = _script()
    runs = dict(full=[_Run(0.30, 0), _Run(0.34, 1)], naive=[_Run(0.20, 0), _Run(0.22, 1)],
                ignore=[_Run(0.23, 0), _Run(0.29, 1)])
    text = mod.summary_table(runs, 0.8)
    rows = _rows(text.split('per training seed')[0])
    # means 32 / 21 / 26: (26 - 21) / (32 - 21) = 45 %
    assert rows['ignore'].startswith('| ignore | 2 | 26.0 |') and rows['ignore'].endswith('| 45 % | n/a |')
    assert 'gap 11.0 points' in text and 'means over training seeds' in text
    per_seed = text.split('per training seed')[1]
    assert '| ignore | 23.0 | 29.0 | 26.0 | 23.0-29.0 |' in per_seed
    # a variant trained at seed 1 only is compared with full and naive at seed 1: (28 - 22) / (34 - 22)
    runs['oracle'] = [_Run(0.28, 1)]
    rows = _rows(mod.summary_table(runs, 0.8).split('per training seed')[0])
    assert rows['oracle'].startswith('| oracle | 1 | 28.0 |') and rows['oracle'].endswith('| 50 % | n/a |')
    runs['blurred'] = [_Run(0.28, 5)]  # no full/naive run at seed 5: nothing to compare with
    rows = _rows(mod.summary_table(runs, 0.8).split('per training seed')[0])
    assert rows['blurred'].endswith('| n/a | n/a |')


@pytest.mark.parametrize('remedy', ['ignore-unannotated', 'known-background'])
def test_paper_config_deltas_change_only_the_train_pipeline_and_assigners(remedy):
    from mmengine.config import Config
    base = Config.fromfile(osp.join(ROOT, 'configs/deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'))
    cfg = Config.fromfile(osp.join(
        ROOT, f'configs/partial_annotation/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus_{remedy}.py'))
    steps = [s['type'] for s in cfg.train_dataloader.dataset.pipeline]
    assert steps == [s['type'] for s in base.train_dataloader.dataset.pipeline][:3] + \
        ['UnannotatedForegroundToIgnore'] + [s['type'] for s in base.train_dataloader.dataset.pipeline][3:]
    assert cfg.test_dataloader == base.test_dataloader and cfg.model.test_cfg == base.model.test_cfg
    stages = [cfg.model.train_cfg.rpn] + list(cfg.model.train_cfg.rcnn)
    base_stages = [base.model.train_cfg.rpn] + list(base.model.train_cfg.rcnn)
    for s, b in zip(stages, base_stages):
        a = dict(s.assigner)
        assert a.pop('type') == ('MaxIoUAssigner' if remedy == 'ignore-unannotated' else 'KnownBackgroundAssigner')
        a.pop('ignore_iof_thr'), a.pop('max_unknown_frac', None)
        assert a == {k: v for k, v in b.assigner.items() if k not in ('type', 'ignore_iof_thr')}
        assert s.sampler == b.sampler
