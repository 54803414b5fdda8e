"""MMDetection-family baselines (RTMDet-Ins, CondInst): short deltas over mmdet's configs that build
without downloads, train one step and predict on a tiny input."""
import os.path as osp

import pytest
import torch
from test_models import ROOT, _fake_batch, build_model

BASELINES = {
    'configs/baselines/rtmdet-ins_cspnext-s_pafpn_3.5k_evican60-cell-nucleus.py': ('RTMDet', 60),
    'configs/baselines/condinst_r50_fpn_3.5k_evican60-cell-nucleus.py': ('CondInst', 60),
    'configs/baselines/rtmdet-ins_cspnext-t_pafpn_demo_synthetic-evican.py': ('RTMDet', 8),
}


def _init_checkpoints(node, found):
    if isinstance(node, dict):
        init = node.get('init_cfg')
        if isinstance(init, dict) and init.get('checkpoint'):
            found.append(init['checkpoint'])
        for v in node.values():
            _init_checkpoints(v, found)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _init_checkpoints(v, found)
    return found


@pytest.mark.parametrize('path', sorted(BASELINES), ids=osp.basename)
def test_baseline_builds_trains_and_predicts(path):
    from mmengine.config import Config
    raw = Config.fromfile(osp.join(ROOT, path))
    # nothing is fetched at run time: checkpoints named in the config are local files
    for ckpt in _init_checkpoints(raw.model, []):
        assert not ckpt.startswith(('http', 'torchvision://', 'open-mmlab://', 'mmcls://')), ckpt
    assert raw.train_dataloader.dataset.type == 'EvicanDataset'
    assert raw.test_evaluator.type == 'DifficultyCocoMetric' and raw.test_evaluator.proposal_nums[-1] == 3000
    assert raw.train_cfg.type == 'IterBasedTrainLoop'
    assert {h['type'] for h in raw.custom_hooks} >= {'APTableHook', 'NumClassCheckHook'}

    model, cfg = build_model(osp.join(ROOT, path))
    detector, num_classes = BASELINES[path]
    assert type(model).__name__ == detector and model.bbox_head.num_classes == num_classes
    # the accuracy benchmark's consensus re-runs the final NMS: here the dense head's
    from scripts.analysis_tools.benchmarks.accuracy import consensus_nms_cfg
    assert consensus_nms_cfg(model) == cfg.model.test_cfg.nms and consensus_nms_cfg(model)['type'] == 'nms'
    torch.manual_seed(0)
    model.train()
    losses = model(**model.data_preprocessor(_fake_batch(128, 128, num_classes=num_classes), True), mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total) and any('mask' in k for k in losses)
    total.backward()
    model.eval()
    with torch.no_grad():
        res = model(**model.data_preprocessor(_fake_batch(128, 128, num_classes=num_classes, batch=1), False),
                    mode='predict')[0]
    inst = res.pred_instances
    assert len(inst.masks) == len(inst.bboxes) == len(inst.labels)
    assert len(inst) == 0 or (inst.labels < num_classes).all() and inst.masks.shape[1:] == (128, 128)
