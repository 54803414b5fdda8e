"""The stack works on CPU: mmcv ops give known results, checkpoints resume on torch >= 2.6."""
import pickle

import pytest
import torch
import torch.nn.functional as F
from mmengine.model import BaseModel
from mmengine.runner import Runner


def test_roi_align_known_values_and_gradient():
    from mmcv.ops import RoIAlign
    # f(x, y) = x + 10 y on a 4x4 map; aligned RoIAlign of box [0, 0, 4, 4] into 1 bin with 2x2
    # samples reads x, y in {0.5, 2.5} (pixel centres shifted by -0.5) -> mean 1.5 + 10 * 1.5
    ys, xs = torch.meshgrid(torch.arange(4.), torch.arange(4.), indexing='ij')
    feat = (xs + 10 * ys)[None, None].clone().requires_grad_(True)
    rois = torch.tensor([[0., 0., 0., 4., 4.]])
    out = RoIAlign(output_size=1, spatial_scale=1.0, sampling_ratio=2, aligned=True)(feat, rois)
    assert out.shape == (1, 1, 1, 1)
    assert out.item() == pytest.approx(16.5)
    out.sum().backward()
    # bilinear weights of the 4 samples (each 1/4) sum to one
    assert feat.grad.sum().item() == pytest.approx(1.0)
    assert feat.grad[0, 0, 0, 0].item() == pytest.approx(0.25 * 0.25)  # sample (0.5, 0.5): w 0.5*0.5


def test_batched_nms_keeps_per_class_maxima():
    from mmcv.ops import batched_nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [0., 0., 10., 10.], [20., 20., 30., 30.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    idxs = torch.tensor([0, 0, 1, 0])  # box 2 overlaps box 0 but is another class
    dets, keep = batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=0.5))
    assert sorted(keep.tolist()) == [0, 2, 3]
    assert dets[:, -1].tolist() == pytest.approx([0.9, 0.7, 0.6])


def test_modulated_deform_conv_matches_conv_with_zero_offsets():
    from mmcv.ops import ModulatedDeformConv2d
    torch.manual_seed(0)
    conv = ModulatedDeformConv2d(4, 6, 3, padding=1, deform_groups=2, bias=True)
    x = torch.randn(2, 4, 7, 7, requires_grad=True)
    offset = torch.zeros(2, 2 * 2 * 9, 7, 7)
    mask = torch.ones(2, 2 * 9, 7, 7)
    out = conv(x, offset, mask)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = F.conv2d(x_ref, conv.weight, conv.bias, padding=1)
    assert torch.allclose(out, ref, atol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    assert torch.allclose(x.grad, x_ref.grad, atol=1e-4)
    # mask 0.5 halves the response (without bias)
    half = conv(x, offset, 0.5 * mask) - conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(half, 0.5 * (ref - conv.bias.view(1, -1, 1, 1)), atol=1e-5)


class _ToyModel(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        pred = self.linear(inputs)  # default_collate stacks the batch
        if mode == 'loss':
            return dict(loss=((pred.squeeze(-1) - labels) ** 2).mean())
        return pred


def _toy_runner(work_dir, max_iters, **kwargs):
    data = [dict(inputs=torch.tensor([float(i), 1.0]), labels=torch.tensor(2.0 * i)) for i in range(8)]
    return Runner(
        model=_ToyModel(), work_dir=str(work_dir),
        train_dataloader=dict(dataset=data, sampler=dict(type='DefaultSampler', shuffle=False),
                              batch_size=2, collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(by_epoch=False, max_iters=max_iters), default_scope='mmengine',
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
                           logger=dict(type='LoggerHook', interval=100)),
        env_cfg=dict(dist_cfg=dict(backend='gloo')), **kwargs)


def test_resume_on_current_torch(tmp_path):
    """A checkpoint of mmengine's runner resumes (open-mmlab/mmengine#1655 fixed in deepcis_mm.compat)."""
    runner = _toy_runner(tmp_path, 2)
    runner.train()
    ckpt = tmp_path / 'iter_2.pth'
    assert ckpt.is_file()
    # why the fix exists: torch >= 2.6 refuses mmengine checkpoints with its default weights_only=True
    if tuple(int(v) for v in torch.__version__.split('.')[:2]) >= (2, 6):
        with pytest.raises(pickle.UnpicklingError):
            torch.load(ckpt)
    saved = torch.load(ckpt, weights_only=False)
    resumed = _toy_runner(tmp_path / 'resumed', 4, resume=True, load_from=str(ckpt))
    resumed.train()
    # iterations 3 and 4 ran on top of the restored state
    assert resumed.iter == 4
    state = torch.load(tmp_path / 'resumed' / 'iter_4.pth', weights_only=False)
    assert state['meta']['iter'] == 4
    assert not torch.equal(state['state_dict']['linear.weight'], saved['state_dict']['linear.weight'])


def test_resume_restores_iteration_and_optimizer_state(tmp_path):
    runner = _toy_runner(tmp_path, 2)
    runner.train()
    saved = torch.load(tmp_path / 'iter_2.pth', weights_only=False)
    resumed = _toy_runner(tmp_path / 'r', 2, resume=True, load_from=str(tmp_path / 'iter_2.pth'))
    resumed.load_or_resume()
    assert resumed.iter == 2  # the next iteration is 3
    opt_state = resumed.optim_wrapper.optimizer.state_dict()['state']
    for key, buf in saved['optimizer']['state'].items():
        assert torch.equal(opt_state[key]['momentum_buffer'], buf['momentum_buffer'])
