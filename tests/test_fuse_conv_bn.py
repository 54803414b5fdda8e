"""conv+BN fusion: FuseConvBNHook (tools/test.py --fuse-conv-bn) and Predictor (on by default) give the
same outputs as the unfused model."""
import os.path as osp
import types

import numpy as np
import torch
from torch import nn

from conftest import ROOT
from deepcis_mm.engine.hooks import FuseConvBNHook

DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'


def test_hook_folds_bn_into_the_conv_and_keeps_the_outputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(8, 4, 1, bias=False), nn.BatchNorm2d(4)))
    for bn in (model[1], model[3][1]):  # loaded statistics, not the identity
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
    x = torch.randn(2, 3, 9, 9)
    ref = model.eval()(x)
    runner = types.SimpleNamespace(model=model)
    FuseConvBNHook().before_test(runner)
    assert isinstance(model[1], nn.Identity) and isinstance(model[3][1], nn.Identity)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert torch.allclose(model(x), ref, atol=1e-5)
    assert not model.training


def test_predictor_fuses_by_default_with_the_same_instances(tmp_path):
    from mmdet.registry import MODELS
    from mmengine.config import Config

    from deepcis_mm.apis import Predictor
    from deepcis_mm.engine import apply_cpu_fallback
    cfg = Config.fromfile(osp.join(ROOT, DEMO))
    apply_cpu_fallback(cfg, force=True)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    for m in model.modules():  # trained-like BN statistics, so that folding changes the weights
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.8, 1.2)
    names = tuple(f'{c} {k}' for c in ('HeLa', 'MCF-7', 'SW-480', 'C2C12') for k in ('cell', 'nucleus'))
    ckpt = str(tmp_path / 'model.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=names))), ckpt)
    img = np.random.default_rng(0).integers(0, 255, (200, 240, 3), dtype=np.uint8)  # as reading.py gives
    fused = Predictor(osp.join(ROOT, DEMO), ckpt, score_thr=0.05)
    plain = Predictor(osp.join(ROOT, DEMO), ckpt, score_thr=0.05, fuse_conv_bn=False)
    n_bn = [sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in p.model.modules()) for p in (fused, plain)]
    assert n_bn[0] < n_bn[1] / 4
    a, b = fused.predict(img), plain.predict(img)
    assert len(a.labels) == len(b.labels) > 0
    assert np.array_equal(a.labels, b.labels)
    assert np.allclose(a.bboxes, b.bboxes, atol=1e-2)
    same = [np.array_equal(ma, mb) for ma, mb in zip(a.masks, b.masks)]
    assert np.mean(same) > 0.9  # masks: equal but for a pixel flipped at a rounding edge, rarely
