"""Model pieces: pixel-size anchors, level-mapped RPN, last-stage-only mask head, every config builds."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.config import Config
from mmengine.structures import InstanceData

from deepcis_mm.engine import apply_cpu_fallback, set_dataset_meta
from deepcis_mm.models import assign_levels

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
SETTING3 = osp.join(ROOT, 'configs/deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py')
DEMO = osp.join(ROOT, 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py')
ALL_CONFIGS = sorted(p for p in glob.glob(osp.join(ROOT, 'configs/**/*.py'), recursive=True)
                     if '/_base_/' not in p)


def build_model(path, **overrides):
    cfg = Config.fromfile(path)
    cfg.merge_from_dict(overrides)
    apply_cpu_fallback(cfg, force=True)

    def no_init(node):  # no downloads in tests
        if isinstance(node, dict):
            if 'init_cfg' in node and isinstance(node['init_cfg'], dict) and \
                    node['init_cfg'].get('type') == 'Pretrained':
                node['init_cfg'] = None
            for v in node.values():
                no_init(v)
        elif isinstance(node, list):
            for v in node:
                no_init(v)
    no_init(cfg.model)
    return MODELS.build(cfg.model), cfg


def test_assign_levels_reproduces_authors_map():
    # LIVECell bt474_config.yaml: sizes 4, 9, 17, 31, 64, 127 on [p2, p2, p3, p4, p5, p6]
    assert assign_levels([4, 9, 17, 31, 64, 127], [4, 8, 16, 32, 64]) == [0, 0, 1, 2, 3, 4]
    assert assign_levels([2, 6, 17, 31, 64, 127, 256, 512, 1024], [4, 8, 16, 32, 64]) == \
        [0, 0, 1, 2, 3, 4, 4, 4, 4]


def test_per_level_anchors_have_paper_sizes():
    gen = TASK_UTILS.build(dict(type='PixelSizeAnchorGenerator', sizes=[4, 9, 17], ratios=[0.25, 1.0, 4.0]))
    assert gen.level_map == [0, 0, 1]
    assert [s[0] for s in gen.strides] == [4, 4, 8]
    assert gen.num_base_priors == [3, 3, 3]
    for size, anchors in zip([4, 9, 17], gen.base_anchors):
        wh = (anchors[:, 2:] - anchors[:, :2]).numpy()
        # ratio = h / w, area = size^2
        np.testing.assert_allclose(wh, [[2 * size, size / 2], [size, size], [size / 2, 2 * size]], rtol=1e-6)
        np.testing.assert_allclose(anchors[:, :2].numpy() + wh / 2, 0, atol=1e-6)  # centred on 0


def test_all_levels_anchors_put_every_size_everywhere():
    sizes = [2, 6, 17, 31, 64, 127, 256, 512, 1024]
    gen = TASK_UTILS.build(dict(type='PixelSizeAnchorGenerator', sizes=sizes, ratios=[0.25, 0.5, 1, 2, 4],
                                mode='all_levels'))
    assert gen.num_base_priors == [45] * 5
    assert [s[0] for s in gen.strides] == [4, 8, 16, 32, 64]
    for anchors in gen.base_anchors:
        wh = anchors[:, 2:] - anchors[:, :2]
        side = torch.sqrt(wh[:, 0] * wh[:, 1])
        assert sorted(set(np.round(side.numpy(), 3).tolist())) == sizes


def test_anchor_generator_rejects_bad_arguments():
    with pytest.raises(ValueError, match='mode'):
        TASK_UTILS.build(dict(type='PixelSizeAnchorGenerator', sizes=[4], ratios=[1], mode='every'))
    with pytest.raises(ValueError, match='level_map'):
        TASK_UTILS.build(dict(type='PixelSizeAnchorGenerator', sizes=[4, 8], ratios=[1], level_map=[0]))


@pytest.mark.parametrize('mode,priors', [('per_level', 5), ('all_levels', 45)])
def test_rpn_head_prior_count_and_level_map(mode, priors):
    sizes = [2, 6, 17, 31, 64, 127, 256, 512, 1024]
    head = MODELS.build(dict(
        type='LevelMappedRPNHead', in_channels=8, feat_channels=8,
        anchor_generator=dict(type='PixelSizeAnchorGenerator', sizes=sizes, ratios=[0.25, 0.5, 1, 2, 4],
                              mode=mode)))
    assert head.num_base_priors == priors
    feats = tuple(torch.rand(1, 8, 64 // 2 ** i, 64 // 2 ** i) for i in range(5))
    cls_scores, bbox_preds = head(feats)
    levels = head.prior_generator.level_map
    assert len(cls_scores) == len(levels) == (9 if mode == 'per_level' else 5)
    for lvl, cls, reg in zip(levels, cls_scores, bbox_preds):
        assert cls.shape == (1, priors, 64 // 2 ** lvl, 64 // 2 ** lvl)
        assert reg.shape[1] == 4 * priors


def test_rpn_head_runs_once_per_fpn_output():
    sizes = [2, 6, 17, 31, 64, 127, 256, 512, 1024]  # level map p2,p2,p3,p4,p5,p6,p6,p6,p6
    head = MODELS.build(dict(
        type='LevelMappedRPNHead', in_channels=8, feat_channels=8,
        anchor_generator=dict(type='PixelSizeAnchorGenerator', sizes=sizes, ratios=[0.5, 1, 2])))
    feats = tuple(torch.rand(1, 8, 64 // 2 ** i, 64 // 2 ** i, requires_grad=True) for i in range(5))
    calls = []
    single = head.forward_single
    head.forward_single = lambda f: calls.append(f.shape[-1]) or single(f)
    cls_scores, bbox_preds = head(feats)
    assert calls == [64, 32, 16, 8, 4]  # each FPN output once
    # the same numbers as running the shared head on the mapped feature list level by level
    for lvl, cls, reg in zip(head.prior_generator.level_map, cls_scores, bbox_preds):
        ref_cls, ref_reg = single(feats[lvl])
        assert torch.equal(cls, ref_cls) and torch.equal(reg, ref_reg)
    # a repeated output still gets the gradient of every level that reads it
    sum(c.sum() for c in cls_scores).backward()
    grad_once = feats[0].grad.clone()
    feats[0].grad = None
    (single(feats[0])[0].sum() * 2).backward()
    assert torch.allclose(grad_once, feats[0].grad)


def _fake_batch(h=96, w=96, n=3, num_classes=8, batch=2):
    """``batch`` images (>= 2: ResNeSt's split-attention BN needs 2 values per channel in training)."""
    torch.manual_seed(0)
    samples = [_fake_sample(h, w, n, num_classes) for _ in range(batch)]
    return dict(inputs=[torch.randint(0, 255, (3, h, w), dtype=torch.uint8) for _ in samples],
                data_samples=samples)


def _fake_sample(h, w, n, num_classes):
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                         scale_factor=(1.0, 1.0), batch_input_shape=(h, w)))
    boxes = torch.tensor([[10., 10., 40., 40.], [50., 20., 90., 60.], [5., 60., 30., 90.]])[:n]
    masks = np.zeros((n, h, w), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[i, y1:y2, x1:x2] = 1
    sample.gt_instances = InstanceData(bboxes=boxes, labels=torch.arange(n) % num_classes,
                                       masks=BitmapMasks(masks, h, w))
    return sample


def test_mask_branch_only_at_last_stage():
    model, _ = build_model(DEMO)
    head = model.roi_head
    assert type(head).__name__ == 'LastStageMaskCascadeRoIHead'
    assert head.num_stages == 3 and len(head.mask_head) == 1 and len(head.bbox_head) == 3
    torch.manual_seed(0)
    model.train()
    losses = model(**model.data_preprocessor(_fake_batch(), True), mode='loss')
    mask_keys = sorted(k for k in losses if 'loss_mask' in k)
    assert mask_keys == ['s2.loss_mask']
    assert {'s0.loss_cls', 's1.loss_cls', 's2.loss_cls'} <= set(losses)
    total, _ = model.parse_losses(losses)
    total.backward()
    assert head.mask_head[0].conv_logits.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        res = model(**model.data_preprocessor(_fake_batch(), False), mode='predict')[0]
    inst = res.pred_instances
    assert inst.masks.shape[1:] == (96, 96) and len(inst.masks) == len(inst.bboxes)


def test_setting3_full_model_predicts_one_image():
    """The paper's network: ResNeSt-200 (stem 128, radix 2) + DCNv2 stages 2-4 + FPN + 3-stage cascade."""
    # fewer proposals than the paper's 3000 keep the CPU test short; the network is unchanged
    model, cfg = build_model(SETTING3, **{'model.test_cfg.rpn.max_per_img': 100,
                                          'model.test_cfg.rcnn.max_per_img': 50})
    bb = model.backbone
    assert (type(bb).__name__, bb.depth, bb.stem_channels, bb.radix) == ('ResNeSt', 200, 128, 2)
    assert [type(m.conv2.conv).__name__ for m in (bb.layer1[0], bb.layer2[0], bb.layer4[0])] == \
        ['Conv2d', 'ModulatedDeformConv2dPack', 'ModulatedDeformConv2dPack']
    assert model.roi_head.bbox_head[0].num_classes == 60 and model.roi_head.mask_head[0].num_classes == 60
    assert 'SyncBatchNorm' not in {type(m).__name__ for m in model.modules()}
    model.eval()
    with torch.no_grad():
        res = model(**model.data_preprocessor(_fake_batch(64, 64, num_classes=60, batch=1), False), mode='predict')[0]
    inst = res.pred_instances
    assert len(inst) <= cfg.model.test_cfg.rcnn.max_per_img
    assert inst.masks.shape[1:] == (64, 64)
    assert (inst.labels < 60).all()


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_every_config_builds(path):
    model, cfg = build_model(path)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert cfg.train_dataloader.dataset.type and cfg.test_evaluator


CPU_SCALE_MODELS = [DEMO] + [osp.join(ROOT, f'configs/baselines/{m}_r18-c16_fpn_demo_synthetic-evican.py')
                             for m in ('mask-rcnn', 'cascade-mask-rcnn')]


@pytest.mark.parametrize('path', CPU_SCALE_MODELS, ids=osp.basename)
def test_cpu_scale_models_share_one_base(path):
    # the demo model and the R18 baselines take their CPU-scale FPN, heads and sampling from one file
    cpu = Config.fromfile(osp.join(ROOT, 'configs/_base_/models/cpu_scale.py')).cpu_scale
    assert cpu.neck.out_channels == 64 and cpu.rcnn_sampler.num == 128  # what the demo numbers came from
    model, cfg = build_model(path)
    assert cfg.cpu_scale == cpu  # inherited, not restated
    ch = cpu.neck.out_channels
    assert {c.conv.out_channels for c in model.neck.fpn_convs} == {ch}
    assert model.rpn_head.rpn_conv.in_channels == model.rpn_head.rpn_conv.out_channels == ch
    assert model.rpn_head.sampler.num == cpu.train_cfg.rpn.sampler.num
    for got, want in ((model.train_cfg.rpn_proposal, cpu.train_cfg.rpn_proposal),
                      (model.test_cfg.rpn, cpu.test_cfg.rpn), (model.test_cfg.rcnn, cpu.test_cfg.rcnn)):
        assert {k: got[k] for k in want} == want
    roi = model.roi_head
    listed = (lambda x: list(x) if isinstance(x, (list, torch.nn.ModuleList)) else [x])
    assert {s.num for s in listed(roi.bbox_sampler)} == {cpu.rcnn_sampler.num}
    for extractor, piece in ((roi.bbox_roi_extractor, cpu.bbox_roi_extractor),
                             (roi.mask_roi_extractor, cpu.mask_roi_extractor)):
        for e in listed(extractor):
            assert e.out_channels == ch and e.roi_layers[0].sampling_ratio == piece.roi_layer.sampling_ratio
    box_rois = (cpu.bbox_roi_extractor.roi_layer.output_size,) * 2
    assert {e.roi_layers[0].output_size for e in listed(roi.bbox_roi_extractor)} == {box_rois}
    assert {(h.in_channels, h.fc_out_channels, h.roi_feat_size) for h in listed(roi.bbox_head)} == \
        {(ch, cpu.bbox_head.fc_out_channels, (cpu.bbox_head.roi_feat_size,) * 2)}
    assert {(len(h.convs), h.conv_out_channels) for h in listed(roi.mask_head)} == {(cpu.mask_head.num_convs, ch)}


def test_culture_consensus_relabels_to_score_weighted_majority():
    from deepcis_mm.models import apply_culture_consensus, consensus_labels
    cultures = ('HeLa', 'HeLa', 'MCF-7', 'MCF-7', 'SW-480')
    kinds = ('cell', 'nucleus', 'cell', 'nucleus', 'cell')
    labels = torch.tensor([0, 2, 3, 0, 4])  # HeLa 0.5+0.4, MCF-7 0.6+0.2, SW-480 0.1
    scores = torch.tensor([0.5, 0.6, 0.2, 0.4, 0.1])
    new, winner = consensus_labels(labels, scores, cultures, kinds)
    assert winner == 'HeLa'
    assert new.tolist() == [0, 0, 1, 0, 0]  # kinds kept; SW-480 cell -> HeLa cell
    # after relabelling, two detections of one object under two cultures are duplicates: NMS again
    res = InstanceData(bboxes=torch.tensor([[0., 0., 10., 10.], [0., 0., 10., 10.2], [30., 30., 40., 40.]]),
                       scores=torch.tensor([0.9, 0.3, 0.8]), labels=torch.tensor([0, 2, 1]))
    out = apply_culture_consensus(res, (cultures, kinds), dict(type='nms', iou_threshold=0.5))
    assert out.labels.tolist() == [0, 1] and out.scores.tolist() == pytest.approx([0.9, 0.8])


def test_culture_consensus_option_in_model_predict():
    model, _ = build_model(DEMO, **{'model.test_cfg.rcnn.culture_consensus': True,
                                    'model.test_cfg.rcnn.score_thr': 0.0})
    model.eval()
    batch = _fake_batch(96, 96, batch=1)
    with torch.no_grad(), pytest.raises(ValueError, match='class table'):
        model(**model.data_preprocessor(batch, False), mode='predict')  # no dataset_meta given
    cultures = ('A', 'A', 'B', 'B', 'C', 'C', 'D', 'D')
    # the class table comes from the model's dataset_meta, given once (not from the image meta)
    set_dataset_meta(model, dict(classes=tuple(f'{c} {k}' for c, k in zip(cultures, ('cell', 'nucleus') * 4)),
                                 cultures=cultures, kinds=('cell', 'nucleus') * 4))
    with torch.no_grad():
        inst = model(**model.data_preprocessor(batch, False), mode='predict')[0].pred_instances
    assert len(inst) > 0
    assert len({cultures[i] for i in inst.labels.tolist()}) == 1
