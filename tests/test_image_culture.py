"""Image-level culture branch: head loss, test-time combination rules, co-culture eval subset,
image-level culture accuracy of the metric, and a train step + predict of the variant model."""
import json
import math
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config

from deepcis_mm.models import ImageCultureHead, combine_class_probs, image_confidence, image_culture_targets

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VARIANT = osp.join(ROOT, 'configs/demo/deepcis-imgculture_s14-dcnv2_fpn_demo_synthetic-evican.py')


# --- head loss -----------------------------------------------------------------------------------
def _head_with_bias(bias):
    head = ImageCultureHead(num_cultures=len(bias), in_channels=4, feat_channels=2, num_levels=2)
    with torch.no_grad():
        head.fc.weight.zero_()  # logits = bias whatever the features
        head.fc.bias.copy_(torch.tensor(bias))
    return head


def test_head_loss_hard_and_soft_targets():
    head = _head_with_bias([0.0, math.log(2.0), 0.0])  # posterior (1/4, 1/2, 1/4)
    feats = [torch.randn(3, 4, 8, 8), torch.randn(3, 4, 4, 4)]
    table = (0, 0, 1, 1, 2, 2, -1)  # label -> culture (label 6 has none)
    hard = torch.tensor([2, 3, 3])  # culture 1 only
    soft = torch.tensor([0, 1, 0, 5])  # cultures 0 (3 instances) and 2 (1): target (3/4, 0, 1/4)
    none = torch.tensor([6], dtype=torch.long)  # no culture: left out
    targets, valid = image_culture_targets([hard, soft, none], table, 3)
    assert torch.allclose(targets[0], torch.tensor([0.0, 1.0, 0.0]))
    assert torch.allclose(targets[1], torch.tensor([0.75, 0.0, 0.25]))
    assert valid.tolist() == [True, True, False]
    loss_hard = head.loss([f[:1] for f in feats], [hard], table)['loss_img_culture']
    assert loss_hard.item() == pytest.approx(math.log(2.0), abs=1e-6)  # -log 1/2
    loss_soft = head.loss([f[:1] for f in feats], [soft], table)['loss_img_culture']
    assert loss_soft.item() == pytest.approx(math.log(4.0), abs=1e-6)  # -(3/4 + 1/4) log 1/4
    both = head.loss([f[:3] for f in feats], [hard, soft, none], table)['loss_img_culture']
    assert both.item() == pytest.approx((math.log(2.0) + math.log(4.0)) / 2, abs=1e-6)  # mean over 2 valid
    only_none = head.loss([f[:1] for f in feats], [none], table)['loss_img_culture']
    assert only_none.item() == 0.0 and only_none.requires_grad
    assert torch.allclose(head.predict(feats)[0], torch.tensor([0.25, 0.5, 0.25]))
    with pytest.raises(ValueError, match='3 images of features, 1 of labels'):
        head.loss(feats, [hard], table)


def test_detached_branch_sends_no_gradient_to_the_fpn():
    for detach, reaches in ((True, False), (False, True)):
        head = ImageCultureHead(num_cultures=2, in_channels=4, feat_channels=2, num_levels=1,
                                detach_features=detach)
        feat = torch.randn(1, 4, 8, 8, requires_grad=True)
        head.loss([feat], [torch.tensor([0])], (0, 1))['loss_img_culture'].backward()
        assert (feat.grad is not None) == reaches
        assert head.conv.weight.grad is not None  # the branch itself learns either way


def test_variant_detector_starts_as_the_paper_model():
    """The branch is built on a forked RNG: the variant's detector weights and the RNG state after
    building (which the training's random draws continue from) are the paper-faithful model's."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()

    def build(path):
        torch.manual_seed(0)
        model = MODELS.build(Config.fromfile(path).model)
        model.init_weights()
        return model.state_dict(), torch.get_rng_state()
    paper, paper_rng = build(osp.join(ROOT, 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'))
    variant, variant_rng = build(VARIANT)
    assert sorted(set(variant) - set(paper)) == [f'roi_head.img_culture_head.{n}' for n in
                                                 ('conv.bias', 'conv.weight', 'fc.bias', 'fc.weight')]
    assert all(torch.equal(paper[k], variant[k]) for k in paper)
    assert torch.equal(paper_rng, variant_rng)


# --- combination rules ---------------------------------------------------------------------------
# labels: 0 A cell, 1 A nucleus, 2 B cell, 3 B nucleus; background last
CULT, KIND = (0, 0, 1, 1), (0, 1, 0, 1)
BOX = torch.tensor([[0.3, 0.0, 0.5, 0.0, 0.2],    # a cell: A 0.3, B 0.5
                    [0.0, 0.1, 0.0, 0.6, 0.3]])   # a nucleus: A 0.1, B 0.6


def test_combination_rules_known_answers():
    pi = torch.tensor([0.9, 0.1])
    prod = combine_class_probs(BOX, CULT, KIND, pi, 'product', weight=1.0, confidence=1.0)
    # cell: p_inst (3/8, 5/8) x (0.9, 0.1) -> (0.3375, 0.0625) -> (0.84375, 0.15625), times P(cell) 0.8
    assert torch.allclose(prod[0], torch.tensor([0.675, 0.0, 0.125, 0.0, 0.2]), atol=1e-6)
    # nucleus: (1/7, 6/7) x (0.9, 0.1) -> (0.6, 0.4) of P(nucleus) 0.7
    assert torch.allclose(prod[1], torch.tensor([0.0, 0.42, 0.0, 0.28, 0.3]), atol=1e-6)
    img = combine_class_probs(BOX, CULT, KIND, pi, 'image', confidence=1.0)
    assert torch.allclose(img[0], torch.tensor([0.72, 0.0, 0.08, 0.0, 0.2]), atol=1e-6)
    half = combine_class_probs(BOX, CULT, KIND, pi, 'image', confidence=0.5)
    # half image culture, half instance evidence: 0.5 * 0.9 + 0.5 * 3/8 = 0.6375 of 0.8
    assert torch.allclose(half[0], torch.tensor([0.51, 0.0, 0.29, 0.0, 0.2]), atol=1e-6)
    for out in (prod, img, half):  # kind mass and background kept: class-agnostic scores unchanged
        assert torch.allclose(out.sum(1), torch.ones(2), atol=1e-6)
        assert torch.allclose(out[:, [0, 2]].sum(1), BOX[:, [0, 2]].sum(1), atol=1e-6)
    assert combine_class_probs(BOX, CULT, KIND, pi, 'none') is BOX
    with pytest.raises(ValueError, match='mode'):
        combine_class_probs(BOX, CULT, KIND, pi, 'vote')
    with pytest.raises(ValueError, match='labels'):
        combine_class_probs(BOX, CULT[:3], KIND[:3], pi, 'product')


def test_flat_image_posterior_degrades_to_per_instance():
    flat = torch.tensor([0.5, 0.5])
    assert image_confidence(flat).item() == pytest.approx(0.0, abs=1e-6)
    assert image_confidence(torch.tensor([1.0, 0.0])).item() == pytest.approx(1.0)
    for mode in ('product', 'image'):
        out = combine_class_probs(BOX, CULT, KIND, flat, mode, weight=3.0)
        assert torch.allclose(out, BOX, atol=1e-6), mode
    # a split posterior (a co-culture field: 2 of 4 cultures) keeps the instance's choice between them
    cult4, kind4 = (0, 0, 1, 1, 2, 2, 3, 3), (0, 1) * 4
    box = torch.tensor([[0.1, 0, 0.5, 0, 0.2, 0, 0.1, 0, 0.1]])  # B most likely by its own evidence
    split = torch.tensor([0.02, 0.48, 0.48, 0.02])  # the field holds B and C
    out = combine_class_probs(box, cult4, kind4, split, 'product')
    assert out[0, :-1].argmax().item() == 2  # B stays B (not forced to the image's top culture)
    out_c = combine_class_probs(torch.tensor([[0.1, 0, 0.2, 0, 0.5, 0, 0.1, 0, 0.1]]), cult4, kind4, split,
                                'product')
    assert out_c[0, :-1].argmax().item() == 4  # and a C cell in the same field stays C


# --- co-culture eval subset ----------------------------------------------------------------------
def test_coculture_subset_written_and_read_back(tmp_path):
    from mmdet.registry import DATASETS

    from scripts.dataset_converters.evican_release import convert_release
    from scripts.dataset_converters.synthetic_evican import make_synthetic_evican
    cultures = ('HeLa', 'MCF-7', 'SW-480')
    src, plain = str(tmp_path / 'src'), str(tmp_path / 'plain')
    kw = dict(cultures=cultures, n_train=2, n_val=1, n_eval_per_level=1, size=96, eval_size_range=(160, 160), seed=3)
    make_synthetic_evican(src, n_coculture=4, **kw)
    make_synthetic_evican(plain, **kw)
    for name in ('instances_train2019_EVICAN60.json', 'instances_eval2019_easy_EVICAN60.json'):
        with open(osp.join(src, name), 'rb') as a, open(osp.join(plain, name), 'rb') as b:
            assert a.read() == b.read()  # the option adds files, changes none
    assert not osp.exists(osp.join(plain, 'instances_eval2019_coculture_EVICAN60.json'))
    dst = str(tmp_path / 'prepared')
    convert_release(src, dst, verbose=False)
    import os
    assert sorted(os.listdir(osp.join(dst, 'annotations'))) == [
        'instances_eval.json', 'instances_eval_coculture.json', 'instances_train.json', 'instances_val.json']
    with open(osp.join(dst, 'annotations', 'instances_eval_coculture.json')) as f:
        coco = json.load(f)
    cat_culture = {c['id']: c['culture'] for c in coco['categories']}
    assert len(coco['images']) == 4
    for im in coco['images']:
        found = {cat_culture[a['category_id']] for a in coco['annotations'] if a['image_id'] == im['id']}
        named = set(osp.splitext(im['file_name'])[0].split('_')[2:])  # coculture_<i>_<A>_<B>.jpg
        assert found == named and len(found) == 2, im['file_name']
        assert im['difficulty'] in (1, 2, 3) and im['culture'] is None
    ds = DATASETS.build(dict(type='EvicanDataset', data_root=dst + '/', ann_file='annotations/instances_eval_coculture.json',
                             data_prefix=dict(img='images/eval/'), test_mode=True, pipeline=[]))
    assert len(ds) == 4
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        assert osp.isfile(info['img_path'])
        cultures_here = {ds.metainfo['cultures'][inst['bbox_label']] for inst in info['instances']}
        assert len(cultures_here) == 2
    with open(osp.join(dst, 'annotations', 'instances_eval.json')) as f:
        assert len(json.load(f)['images']) == 3  # the single-culture eval is unchanged


# --- metric: image-level culture accuracy --------------------------------------------------------
def test_metric_image_culture_accuracy(tmp_path):
    from test_metric import CLASSES, SIZE, write_gt

    from deepcis_mm.evaluation import DifficultyCocoMetric
    # images 1, 2 HeLa; 3 MCF-7; 4 both (a co-culture: counted apart)
    gt = write_gt(tmp_path / 'gt.json', [(1, 1), (2, 1), (3, 2), (4, 1)], [
        (1, 1, 2, 2, 20, 20), (2, 1, 30, 30, 20, 20), (3, 3, 10, 10, 24, 24), (3, 4, 14, 14, 10, 10),
        (4, 1, 2, 2, 20, 20), (4, 3, 30, 30, 20, 20)])
    dets = {1: [(0, 0.9, 2, 2, 20, 20), (2, 0.5, 30, 30, 8, 8)],  # vote: HeLa (right)
            2: [(2, 0.9, 30, 30, 20, 20)],  # vote: MCF-7 (wrong)
            3: [(2, 0.9, 10, 10, 24, 24)],  # vote: MCF-7 (right)
            4: [(0, 0.9, 2, 2, 20, 20)]}
    branch = {1: [0.8, 0.2], 2: [0.6, 0.4], 3: [0.3, 0.7], 4: [0.5, 0.5]}  # all right

    def run(with_branch):
        metric = DifficultyCocoMetric(ann_file=gt, metric=['bbox'])
        metric.dataset_meta = dict(classes=CLASSES, cultures=tuple(c.split()[0] for c in CLASSES),
                                   kinds=tuple(c.split()[1] for c in CLASSES))
        samples = []
        for img_id, ds in dets.items():
            s = dict(img_id=img_id, ori_shape=(SIZE, SIZE), pred_instances=dict(
                bboxes=torch.tensor([[x, y, x + w, y + h] for _, _, x, y, w, h in ds], dtype=torch.float32),
                scores=torch.tensor([d[1] for d in ds]), labels=torch.tensor([d[0] for d in ds])))
            if with_branch:
                s.update(image_culture_probs=branch[img_id], image_cultures=('HeLa', 'MCF-7'))
            samples.append(s)
        metric.process({}, samples)
        return metric.evaluate(len(samples)), metric.last_tables['image_culture']

    flat, table = run(with_branch=False)
    assert flat['coco/img_culture_acc'] == pytest.approx(2 / 3)
    assert table['images'] == 3 and table['multi_culture_images'] == 1 and table['source'] == 'detection vote'
    flat, table = run(with_branch=True)
    assert flat['coco/img_culture_acc'] == pytest.approx(1.0) and table['source'] == 'image branch'


# --- the variant model ---------------------------------------------------------------------------
def test_variant_train_step_and_predict(prepared):
    from mmdet.registry import DATASETS, MODELS
    from mmengine.dataset import pseudo_collate

    from deepcis_mm.engine import apply_cpu_fallback, set_dataset_meta
    cfg = Config.fromfile(VARIANT)
    apply_cpu_fallback(cfg, force=True)
    cfg.model.roi_head.num_classes = 6  # the fixture has 3 cultures
    cfg.model.roi_head.img_culture_head.num_cultures = 3
    ds_cfg = dict(cfg.train_dataloader.dataset, data_root=prepared + '/')
    ds = DATASETS.build(ds_cfg)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    with pytest.raises(RuntimeError, match='class table'):
        model.train()
        model(**model.data_preprocessor(pseudo_collate([ds[0], ds[1]]), True), mode='loss')
    wrong = dict(ds.metainfo, classes=ds.metainfo['classes'][:4], cultures=ds.metainfo['cultures'][:4],
                 kinds=ds.metainfo['kinds'][:4])
    with pytest.raises(ValueError, match='num_cultures=3'):
        set_dataset_meta(model, wrong)  # 2 cultures: the head was built for 3
    set_dataset_meta(model, ds.metainfo)  # as DatasetMetaHook (tools/) and checkpoint loading do
    assert model.roi_head.cultures == ('HeLa', 'MCF-7', 'SW-480')
    losses = model(**model.data_preprocessor(pseudo_collate([ds[0], ds[1]]), True), mode='loss')
    assert 'loss_img_culture' in losses and losses['loss_img_culture'] > 0
    total, _ = model.parse_losses(losses)
    total.backward()
    assert model.roi_head.img_culture_head.fc.weight.grad.abs().sum() > 0
    assert model.backbone.stem[0].weight.grad.abs().sum() > 0  # trained jointly with the detector

    test_ds = DATASETS.build(dict(cfg.test_dataloader.dataset, data_root=prepared + '/'))
    data = pseudo_collate([test_ds[0]])
    model.eval()
    head = model.roi_head
    with torch.no_grad():
        out = model.test_step(data)[0]
        probs = out.metainfo['image_culture_probs']
        assert len(probs) == 3 and sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert out.metainfo['image_cultures'] == ('HeLa', 'MCF-7', 'SW-480')
        assert len(out.pred_instances) > 0
        # a flat image posterior: every combination mode predicts exactly what per-instance scoring does
        head.img_culture_head.fc.weight.zero_()
        head.img_culture_head.fc.bias.zero_()
        preds = {}
        for mode in ('none', 'product', 'image'):
            head.test_cfg['image_culture'] = dict(mode=mode, weight=1.0)
            preds[mode] = model.test_step(pseudo_collate([test_ds[0]]))[0].pred_instances
        for mode in ('product', 'image'):
            assert torch.equal(preds[mode].labels, preds['none'].labels)
            assert torch.allclose(preds[mode].scores, preds['none'].scores, atol=1e-5)
        # a sure image posterior relabels every detection to that culture, keeping its kind
        head.img_culture_head.fc.bias.copy_(torch.tensor([0.0, 30.0, 0.0]))
        head.test_cfg['image_culture'] = dict(mode='image')
        sure = model.test_step(pseudo_collate([test_ds[0]]))[0].pred_instances
        cultures = [ds.metainfo['cultures'][i] for i in sure.labels.tolist()]
        assert set(cultures) == {'MCF-7'}
        head.test_cfg['image_culture'] = dict(mode='image', window=0.5)  # every window as sure
        windowed = model.test_step(pseudo_collate([test_ds[0]]))[0].pred_instances
        assert {ds.metainfo['cultures'][i] for i in windowed.labels.tolist()} == {'MCF-7'}
        head.test_cfg['image_culture'] = dict(mode='image', windw=0.5)
        with pytest.raises(ValueError, match=r"unknown key\(s\) \['windw'\]"):
            model.test_step(pseudo_collate([test_ds[0]]))


# --- benchmark: every combination option scored from one backbone/RPN pass --------------------------
def test_benchmark_scores_every_option_from_one_model(prepared, tmp_path):
    from mmdet.registry import MODELS

    from deepcis_mm.engine import apply_cpu_fallback
    from scripts.analysis_tools.benchmarks.accuracy import IMAGE_CULTURE_OPTIONS, evaluate
    cfg = Config.fromfile(VARIANT)
    apply_cpu_fallback(cfg, force=True)
    cfg.model.roi_head.num_classes = 6
    cfg.model.roi_head.img_culture_head.num_cultures = 3
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    with torch.no_grad():  # a flat image posterior: every option must score exactly as per-instance
        model.roi_head.img_culture_head.fc.weight.zero_()
        model.roi_head.img_culture_head.fc.bias.zero_()
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    opts = {'model.roi_head.num_classes': 6, 'model.roi_head.img_culture_head.num_cultures': 3,
            'test_dataloader.dataset.data_root': prepared + '/',
            'test_evaluator.ann_file': prepared + '/annotations/instances_eval.json',
            'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False,
            'model.test_cfg.rcnn.score_thr': 0.05}
    scores = evaluate(VARIANT, ckpt, str(tmp_path / 'w'), opts, IMAGE_CULTURE_OPTIONS)
    names = [n for n, _ in IMAGE_CULTURE_OPTIONS]
    assert set(scores) == set(names) | {f'{n} + consensus vote' for n in names}
    base = scores[names[0]]
    assert 'img_culture_acc' in base and 0 <= base['img_culture_acc'] <= 1
    for name in names[1:]:
        for key in ('bbox_mAP', 'segm_mAP', 'segm_agnostic_mAP', 'culture_acc'):
            a, b = scores[name][key], base[key]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9), (name, key)


# --- predict: the image's culture in the CSV and the overlay caption -------------------------------
def test_image_culture_of_tiles_is_pixel_weighted():
    from deepcis_mm.apis.predictor import image_culture_of_tiles
    assert image_culture_of_tiles([]) is None
    name, p = image_culture_of_tiles([(100, ('A', 'B'), [1.0, 0.0]), (300, ('A', 'B'), [0.0, 1.0])])
    assert name == 'B' and p == pytest.approx(0.75)


def test_predict_writes_image_culture(tmp_path):
    import csv

    import cv2
    from mmdet.registry import MODELS

    from deepcis_mm.apis import Predictor
    from deepcis_mm.cli import main
    from deepcis_mm.engine import apply_cpu_fallback
    classes = ['HeLa cell', 'HeLa nucleus', 'MCF-7 cell', 'MCF-7 nucleus', 'SW-480 cell', 'SW-480 nucleus',
               'C2C12 cell', 'C2C12 nucleus']
    cfg = Config.fromfile(VARIANT)
    apply_cpu_fallback(cfg, force=True)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    with torch.no_grad():  # the image branch is sure: MCF-7
        model.roi_head.img_culture_head.fc.weight.zero_()
        model.roi_head.img_culture_head.fc.bias.copy_(torch.tensor([0.0, 20.0, 0.0, 0.0]))
    ckpt = str(tmp_path / 'model.pth')
    meta = dict(classes=classes, cultures=tuple(c.split()[0] for c in classes),
                kinds=tuple(c.split()[1] for c in classes))
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=meta)), ckpt)
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'a.png'), np.random.default_rng(0).integers(0, 255, (96, 128), dtype=np.uint8))
    pred = Predictor(VARIANT, ckpt, score_thr=0.0)
    assert pred.has_image_culture
    inst = pred.predict(cv2.imread(str(tmp_path / 'in' / 'a.png')))
    assert inst.image_culture[0] == 'MCF-7' and inst.image_culture[1] > 0.99
    assert main(['predict', str(tmp_path / 'in'), '--config', VARIANT, '--checkpoint', ckpt, '--out',
                 str(tmp_path / 'out'), '--score-thr', '0.0', '--quiet']) == 0
    with open(tmp_path / 'out' / 'instances.csv') as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames[-2:] == ['image_culture', 'image_culture_prob'] and rows
    assert {r['image_culture'] for r in rows} == {'MCF-7'} and all(float(r['image_culture_prob']) > 0.99 for r in rows)
    # the image branch also decides each instance's culture here (mode 'product', sure posterior)
    assert {r['culture'] for r in rows} == {'MCF-7'}


def test_window_posterior_reads_the_head_locally():
    """The whole-image window is the global head; on a field whose halves show different features,
    a box takes the culture of its own half."""
    torch.manual_seed(0)
    head = ImageCultureHead(num_cultures=2, in_channels=2, feat_channels=2, num_levels=2)
    with torch.no_grad():
        head.conv.weight.zero_()
        head.conv.bias.zero_()
        head.conv.weight[0, 0, 1, 1] = 1.0  # feature 0 copies input channel 0
        head.conv.weight[1, 1, 1, 1] = 1.0  # feature 1 copies input channel 1
        head.fc.weight.copy_(torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 4.0, 0.0, 0.0]]))  # level 0 only
        head.fc.bias.zero_()
    p2 = torch.zeros(1, 2, 16, 16)
    p2[0, 0, :, :8] = 1.0  # left half: culture 0 evidence
    p2[0, 1, :, 8:] = 1.0  # right half: culture 1 evidence
    feats = [p2, torch.zeros(1, 2, 8, 8)]
    boxes = torch.tensor([[4.0, 20.0, 12.0, 28.0], [52.0, 30.0, 60.0, 40.0], [0.0, 0.0, 64.0, 64.0]])
    local = head.predict_windows(feats, boxes, (64, 64), (64, 64), window=0.25)
    assert local[0, 0] > 0.9 and local[1, 1] > 0.9  # left box -> culture 0, right box -> culture 1
    whole = head.predict_windows(feats, boxes[2:], (64, 64), (64, 64), window=1.0)
    assert torch.allclose(whole, head.predict(feats), atol=1e-6)  # the full window is the global head
    with pytest.raises(ValueError, match='window must be > 0'):
        head.predict_windows(feats, boxes, (64, 64), (64, 64), window=0.0)


def test_per_box_posteriors_combine_row_by_row():
    per_box = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    for mode in ('product', 'image'):
        both = combine_class_probs(BOX, CULT, KIND, per_box, mode)
        for i in range(2):
            one = combine_class_probs(BOX[i:i + 1], CULT, KIND, per_box[i], mode)
            assert torch.allclose(both[i], one[0], atol=1e-6)
