"""scripts/analysis_tools/benchmark.py: ratios, tables, docs sections, the speed worker, post-hoc consensus."""
import copy
import json
import math
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from scripts.analysis_tools.benchmarks import speed as speed_mod
from scripts.analysis_tools.benchmarks import profiling, speed_suite
from scripts.analysis_tools.benchmarks import synthetic_batch as batch_mod
from scripts.analysis_tools.benchmarks.accuracy import COLUMNS, evaluate
from scripts.analysis_tools.benchmarks.tables import accuracy_table, breakdown_table, speed_table, update_section

DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'


def _fake_result(median, peak=100.0, dets=None):
    return dict(times=[median], median=median, peak_mib=peak, params_m=1.0, dets=dets, gflop=2000 * median,
                parts={'backbone': median / 4, 'box heads': median / 2, 'forward': 0.9 * median})


def test_run_speed_ratios_against_model_b(monkeypatch):
    known = {('A', 'train'): 6.0, ('A', 'infer'): 3.0, ('B', 'train'): 2.0, ('B', 'infer'): 4.0}
    calls = []

    def fake(config, phase, args, log):
        calls.append((config, phase, args['size'], args['repeats']))
        return _fake_result(known[config, phase], dets=5 if phase == 'infer' else None)

    monkeypatch.setattr(speed_suite, '_measure_in_subprocess', fake)
    rows = speed_suite.run_speed([('a', 'model a', 'A'), ('b', 'model b', 'B')], size=96, repeats=2,
                               infer_repeats=4, log=lambda *_: None)
    # every model, both phases, each in its own measurement with its own repeat count
    assert calls == [('A', 'train', 96, 2), ('A', 'infer', 96, 4), ('B', 'train', 96, 2), ('B', 'infer', 96, 4)]
    assert rows[0]['train']['ratio'] == pytest.approx(3.0) and rows[0]['infer']['ratio'] == pytest.approx(0.75)
    assert rows[1]['train']['ratio'] == pytest.approx(1.0)
    table = speed_table(rows, 96, 2).splitlines()
    assert '2×96²' in table[0] and len(table) == 4
    assert table[2] == '| (a) model a | 1.0 | 6 | 3.00 | 12 | 100 | 3 | 0.75 | 6 | 100 | 5 |'
    parts = breakdown_table(rows, ['backbone', 'box heads', 'mask heads']).splitlines()
    # (a) train: 6 s = forward 5.4 (1.5 backbone + 3 box heads + 0.9 other) + 0.6 backward; absent
    # component shown as a dash
    assert parts[2] == '| (a) | train | 6 | 1.5 | 3 | – | 0.9 | 0.6 |'


def test_run_speed_without_reference_gives_no_ratio(monkeypatch):
    monkeypatch.setattr(speed_suite, '_measure_in_subprocess', lambda *a: _fake_result(1.0))
    rows = speed_suite.run_speed([('d', 'demo', 'D')], log=lambda *_: None)
    assert rows[0]['train']['ratio'] is None
    assert '| n/a |' in speed_table(rows, 512, 2)


def test_accuracy_table_percent_and_nan():
    rows = [dict(label='m', consensus='on', metrics={'bbox_L1_mAP': 0.25, 'culture_acc': float('nan')})]
    line = accuracy_table(rows, ['bbox_L1_mAP', 'segm_mAP', 'culture_acc']).splitlines()[2]
    assert line == '| m | on | 25.0 | n/a | n/a |'


def test_update_section_replaces_only_its_section(tmp_path):
    readme = tmp_path / 'README.md'
    readme.write_text('intro\n<!-- benchmark:speed:start -->\nold\n<!-- benchmark:speed:end -->\n'
                      '<!-- benchmark:accuracy:start -->\nkeep\n<!-- benchmark:accuracy:end -->\n')
    update_section(str(readme), 'speed', 'new table\n')
    text = readme.read_text()
    assert 'new table' in text and 'old' not in text and 'keep' in text and text.startswith('intro\n')
    update_section(str(readme), 'speed', 'newer')  # idempotent markers
    assert readme.read_text().count('<!-- benchmark:speed:start -->') == 1 and 'newer' in readme.read_text()
    with pytest.raises(ValueError, match='markers'):
        update_section(str(readme), 'memory', 'x')


def test_measure_demo_model_train_and_infer():
    train = speed_mod.measure(osp.join(ROOT, DEMO), 'train', size=96, warmup=0, repeats=2)
    assert len(train['times']) == 2 and all(t > 0 for t in train['times'])
    assert train['median'] == pytest.approx(sum(train['times']) / 2)
    assert {'backbone', 'neck', 'RPN head', 'box heads', 'mask heads'} <= set(train['parts'])
    forward = train['parts'].pop('forward')
    assert sum(train['parts'].values()) < forward < train['median']  # parts < forward < forward + backward
    assert train['peak_mib'] > 0 and 3 < train['params_m'] < 4
    infer = speed_mod.measure(osp.join(ROOT, DEMO), 'infer', size=96, warmup=1, repeats=1)
    assert len(infer['times']) == 1 and infer['dets'] == 100  # the fixed detection count (default)
    assert infer['parts']['mask heads'] > 0
    assert train['gflop'] is None and infer['gflop'] > 0  # counted in the warm-up run only
    with pytest.raises(ValueError, match='phase'):
        speed_mod.measure(osp.join(ROOT, DEMO), 'export', size=96, warmup=0, repeats=1)


def test_measure_proposal_count_and_conv_bn_fusion():
    # 4 proposals x 8 classes bound the detections (score threshold 0); the configured 300 give 100
    few = speed_mod.measure(osp.join(ROOT, DEMO), 'infer', size=96, warmup=0, repeats=1, proposals=4)
    assert 0 < few['dets'] <= 4 * 8 and few['cpu_median'] > 0
    fused = speed_mod.measure(osp.join(ROOT, DEMO), 'infer', size=96, warmup=0, repeats=1, fuse=True)
    assert fused['dets'] == 100
    with pytest.raises(ValueError, match='inference only'):
        speed_mod.measure(osp.join(ROOT, DEMO), 'train', size=96, warmup=0, repeats=1, fuse=True)
    with pytest.raises(ValueError, match='two-stage'):
        speed_mod.build_model(osp.join(ROOT, 'configs/baselines/rtmdet-ins_cspnext-t_pafpn_demo_synthetic-evican.py'),
                              'cpu', proposals=10)


def test_conv_bn_fusion_keeps_the_detections():
    from mmcv.cnn import fuse_conv_bn
    torch.manual_seed(0)
    model = speed_mod.build_model(osp.join(ROOT, DEMO), 'cpu', dets=50).eval()
    for m in model.modules():  # BN statistics other than the identity, so that fusion has work to do
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    data = batch_mod.collate(batch_mod.synthetic_batch(128, 1, 0))
    with torch.no_grad():
        ref = model.test_step(data)[0].pred_instances
        fused_model = fuse_conv_bn(copy.deepcopy(model))
        out = fused_model.test_step(data)[0].pred_instances
    n_bn = [sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in x.modules())
            for x in (model, fused_model)]
    assert n_bn[1] < n_bn[0] / 4  # most BNs folded (those after deformable convs stay)
    assert len(ref) == len(out) == 50
    assert torch.equal(ref.labels, out.labels)
    assert torch.allclose(ref.bboxes, out.bboxes, atol=1e-2)
    assert (ref.masks != out.masks).float().mean() < 1e-3


def test_synthetic_batch_is_fixed_size_with_cells_and_nuclei():
    samples = batch_mod.synthetic_batch(128, 2, seed=0)
    again = batch_mod.synthetic_batch(128, 2, seed=0)
    for s, t in zip(samples, again):
        assert s['inputs'].shape == (3, 128, 128) and torch.equal(s['inputs'], t['inputs'])
        gt = s['data_samples'].gt_instances
        assert len(gt) > 0 and len(gt.masks) == len(gt)
        assert set(gt.labels.tolist()) <= set(range(2 * batch_mod.N_CULTURES))
        assert {0, 1} <= {lab % 2 for lab in gt.labels.tolist()}  # cells and nuclei


def test_benchmark_speed_command_writes_tables(tmp_path):
    out = tmp_path / 'bench'
    res = subprocess.run([sys.executable, 'scripts/analysis_tools/benchmark.py', 'speed', '--models', 'd',
                          '--size', '96', '--warmup', '0', '--repeats', '1', '--infer-repeats', '1', '--out', str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    md = (out / 'speed.md').read_text()
    assert 'scripts/analysis_tools/benchmark.py speed --models d' in md and 'Machine:' in md and '| (d) ' in md
    rows = json.loads((out / 'speed.json').read_text())['rows']
    assert [r['key'] for r in rows] == ['d'] and rows[0]['train']['median'] > 0
    bad = subprocess.run([sys.executable, 'scripts/analysis_tools/benchmark.py', 'speed', '--models', 'z'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and '--models z unknown' in bad.stderr
    bad = subprocess.run([sys.executable, 'scripts/analysis_tools/benchmark.py', 'speed', '--device', 'tpu'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and 'error: --device tpu unknown' in bad.stderr


def test_model_b_is_the_deepcis_backbone_under_stock_cascade_heads():
    from mmengine.config import Config
    configs = {k: Config.fromfile(osp.join(ROOT, c)).model for k, _, c in speed_suite.SPEED_MODELS}
    a, b = configs['a'], configs['b']
    assert b.backbone == a.backbone and b.backbone.type == 'ResNeSt' and b.backbone.depth == 200
    assert b.backbone.stage_with_dcn == (False, True, True, True) and b.neck == a.neck
    assert b.data_preprocessor == a.data_preprocessor
    # stock heads: mmdet's RPN/anchors and cascade head with a mask head at every stage
    assert b.rpn_head.type == 'RPNHead' and b.roi_head.type == 'CascadeRoIHead'
    assert b.roi_head.bbox_head[0].type == 'Shared2FCBBoxHead' and b.roi_head.bbox_head[0].num_classes == 60
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    mask_heads = {}
    for key, model in (('a', a), ('b', b)):
        roi_head = copy.deepcopy(model.roi_head)
        roi_head.update(train_cfg=model.train_cfg.rcnn, test_cfg=model.test_cfg.rcnn)
        mask_heads[key] = len(MODELS.build(roi_head).mask_head)
    assert mask_heads == {'a': 1, 'b': 3}  # DeepCIS: last stage only


def test_speed_devices_auto_adds_the_gpu_only_where_there_is_one():
    assert speed_suite.speed_devices('auto', gpu_available=False) == ['cpu']
    assert speed_suite.speed_devices('auto', gpu_available=True) == ['cpu', 'cuda']
    assert speed_suite.speed_devices('cpu, cuda:1', gpu_available=True) == ['cpu', 'cuda:1']
    with pytest.raises(ValueError, match='torch sees no GPU'):
        speed_suite.speed_devices('cpu,cuda', gpu_available=False)
    with pytest.raises(ValueError, match='--device gpu unknown'):
        speed_suite.speed_devices('gpu', gpu_available=True)
    with pytest.raises(ValueError, match='empty'):
        speed_suite.speed_devices(',', gpu_available=True)


def test_post_hoc_consensus_equals_the_heads_own(prepared, tmp_path):
    """The accuracy benchmark's consensus for stock heads (applied to predictions afterwards) scores
    exactly like DeepCIS's in-head option."""
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from deepcis_mm.engine import apply_cpu_fallback
    cfg = Config.fromfile(osp.join(ROOT, DEMO))
    apply_cpu_fallback(cfg, force=True)
    cfg.model.roi_head.num_classes = 6  # the fixture has 3 cultures
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=MODELS.build(cfg.model).state_dict()), ckpt)
    opts = {'model.roi_head.num_classes': 6, 'test_dataloader.dataset.data_root': prepared + '/',
            'test_evaluator.ann_file': prepared + '/annotations/instances_eval.json',
            'test_dataloader.num_workers': 0, 'test_dataloader.persistent_workers': False,
            'model.test_cfg.rcnn.score_thr': 0.0}
    post_hoc = evaluate(osp.join(ROOT, DEMO), ckpt, str(tmp_path / 'a'), opts)
    in_head = evaluate(osp.join(ROOT, DEMO), ckpt, str(tmp_path / 'b'),
                       {**opts, 'model.test_cfg.rcnn.culture_consensus': True})
    assert set(COLUMNS) <= set(post_hoc['off'])

    def same(x, y):
        return all((math.isnan(x[k]) and math.isnan(y[k])) or x[k] == pytest.approx(y[k], abs=1e-12)
                   for k in COLUMNS)

    assert same(post_hoc['on'], in_head['off'])
    assert same(in_head['on'], in_head['off'])  # consensus twice = once


@pytest.mark.parametrize('wrong_every', [3, 1])
def test_consensus_and_oracle_scoring_on_known_predictions(prepared, wrong_every):
    """Ground truth as predictions, every third one (or every one) under the next culture: as
    predicted, culture accuracy is the share of right ones and mAP < 1; the consensus vote makes
    everything right where most are right (mAP 1) and everything wrong where all are wrong; the
    ground-truth culture (oracle) makes everything right in both cases."""
    import numpy as np
    from mmdet.registry import DATASETS, METRICS
    from mmdet.structures import DetDataSample
    from mmengine.evaluator import Evaluator
    from mmengine.structures import InstanceData
    from pycocotools.coco import COCO

    from scripts.analysis_tools.benchmarks.accuracy import score_with_consensus
    ann = prepared + '/annotations/instances_eval.json'
    ds = DATASETS.build(dict(type='EvicanDataset', data_root=prepared + '/', ann_file='annotations/instances_eval.json',
                             data_prefix=dict(img='images/eval/'), test_mode=True, pipeline=[]))
    coco = COCO(ann)
    cultures, kinds = ds.metainfo['cultures'], ds.metainfo['kinds']
    label_of = {(c, k): i for i, (c, k) in enumerate(zip(cultures, kinds))}
    uniq = sorted(set(cultures))
    batches, n_right, n_all = [], 0, 0
    for i in range(len(ds)):
        info = ds.get_data_info(i)
        img = coco.imgs[info['img_id']]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img['id']))
        labels, scores, truth = [], [], []
        for j, a in enumerate(anns):
            true = ds.cat2label[a['category_id']]
            truth.append(true)
            if j % wrong_every == wrong_every - 1:  # the next culture, same kind
                wrong = uniq[(uniq.index(cultures[true]) + 1) % len(uniq)]
                labels.append(label_of[wrong, kinds[true]])
                scores.append(0.6)
            else:
                labels.append(true)
                scores.append(0.9)
                n_right += 1
        n_all += len(anns)
        sample = DetDataSample(metainfo=dict(img_id=img['id'], ori_shape=(img['height'], img['width'])))
        sample.gt_instances = InstanceData(labels=torch.tensor(truth, dtype=torch.long))
        x, y, w, h = np.array([a['bbox'] for a in anns], np.float32).reshape(-1, 4).T
        sample.pred_instances = InstanceData(
            bboxes=torch.from_numpy(np.stack([x, y, x + w, y + h], 1)), scores=torch.tensor(scores),
            labels=torch.tensor(labels, dtype=torch.long),
            masks=torch.from_numpy(np.array([coco.annToMask(a) for a in anns], bool).reshape(
                -1, img['height'], img['width'])))
        batches.append(({}, [sample]))
    assert (0 < n_right < n_all) if wrong_every == 3 else n_right == 0
    scores = score_with_consensus(
        batches, lambda: Evaluator(METRICS.build(dict(type='DifficultyCocoMetric', ann_file=ann,
                                                      metric=['bbox', 'segm']))),
        ds.metainfo, dict(type='nms', iou_threshold=0.5), len(ds), oracle=True)
    off, on, oracle = scores['off'], scores['on'], scores['oracle']
    assert off['culture_acc'] == pytest.approx(n_right / n_all)
    assert on['culture_acc'] == pytest.approx(1.0 if wrong_every == 3 else 0.0)
    assert oracle['culture_acc'] == pytest.approx(1.0)
    for key in ('bbox_mAP', 'segm_mAP', 'bbox_L1_mAP', 'segm_L3_mAP'):
        assert oracle[key] == pytest.approx(1.0) and off[key] < 1.0
        assert on[key] == pytest.approx(1.0) if wrong_every == 3 else on[key] == pytest.approx(0.0)
    assert off['segm_agnostic_mAP'] == pytest.approx(1.0) == on['segm_agnostic_mAP'] == oracle['segm_agnostic_mAP']


def test_flop_count_of_a_deformable_conv_by_hand():
    from mmcv.ops import ModulatedDeformConv2dPack
    m = ModulatedDeformConv2dPack(3, 4, 3, padding=1)  # + a regular 3x3 conv predicting 27 offset/mask maps
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    offset_conv = 2 * (27 * 8 * 8) * (3 * 9)  # 2 FLOPs per multiply-add: outputs x (in x k x k)
    dcn = 2 * (4 * 8 * 8) * (3 * 9)  # invisible to torch: counted by the hook
    with torch.no_grad(), profiling.FlopCount(m, backward=False) as fc:
        m(x)
    assert fc.total == offset_conv + dcn == 107136
    with profiling.FlopCount(m, backward=True) as fc:
        m(x).sum().backward()
    assert fc.total == 3 * (offset_conv + dcn)  # backward: gradients of input and weights


def test_predict_benchmark_exponents_table_and_one_small_field(tmp_path):
    from scripts.analysis_tools.benchmarks import predict as pb
    assert pb.growth_exponent([1, 4, 16, 64], [3, 12, 48, 192]) == pytest.approx(1.0)
    assert pb.growth_exponent([1, 4], [1, 8]) == pytest.approx(1.5)
    assert pb.growth_exponent([1], [1]) is None
    img, n = pb.make_field(300)
    assert img.shape == (300, 300) and img.dtype.name == 'uint8' and n > 20  # dense: several fields' worth
    ckpt = pb.random_checkpoint(str(tmp_path / 'random.pth'), osp.join(ROOT, pb.DEMO))
    rows = pb.run_predict_bench([256], osp.join(ROOT, pb.DEMO), ckpt, str(tmp_path / 'work'),
                                extra=['--score-thr', '0.05'], log=lambda *_: None)
    row = rows[0]
    assert row['size'] == 256 and row['tiles'] == 1 and row['instances'] > 0
    assert 0 < row['predict_s'] <= row['total_s'] and 0.1 < row['peak_rss_gib'] < 8
    assert osp.isfile(str(tmp_path / 'work' / 'out_256' / 'instances.csv'))  # the outputs were committed
    assert 0 < row['cpu_s']
    rows.append(dict(row, size=512, megapixels=4 * row['megapixels'], total_s=4 * row['total_s'],
                     cpu_s=8 * row['cpu_s'], peak_rss_gib=2 * row['peak_rss_gib']))
    table = pb.predict_table(rows)
    assert '| 256² |' in table and 'time 1.00 (1.00), CPU time 1.50 (1.50), peak RSS 0.50 (0.50)' in table


def test_field_ap50_of_known_detections(tmp_path):
    import json as _json

    from pycocotools import mask as mask_utils

    from scripts.analysis_tools.benchmarks import predict as pb
    img, n, objects = pb.make_field(512, with_objects=True)
    assert len(objects) == n and {lab for _, lab in objects} <= set(range(8))
    rles = [mask_utils.merge(mask_utils.frPyObjects([poly.ravel().tolist()], 512, 512)) for poly, _ in objects]
    for r in rles:
        r['counts'] = r['counts'].decode()
    path = str(tmp_path / 'res.json')
    # every object found once (labels ignored: class-agnostic) -> 100; half of them -> 50 at best
    _json.dump([dict(image_id=1, category_id=7, segmentation=r, score=0.9) for r in rles], open(path, 'w'))
    assert pb.class_agnostic_ap50(objects, 512, path) == pytest.approx(100.0)
    _json.dump([dict(image_id=1, category_id=1, segmentation=r, score=0.9) for r in rles[::2]], open(path, 'w'))
    assert pb.class_agnostic_ap50(objects, 512, path) == pytest.approx(100 * len(rles[::2]) / len(rles), abs=1.5)
