"""FuseConvBNHook (tools/test.py --fuse-conv-bn): BN folded into convs after loading, same outputs."""
import types

import torch
from torch import nn

from deepcis_mm.engine.hooks import FuseConvBNHook


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
