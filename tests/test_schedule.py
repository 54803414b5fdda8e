"""The paper's schedule: evaluations and checkpoints at 1,500 / 2,000 / 3,500 iterations exactly."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner

from deepcis_mm.engine.hooks import MilestoneCheckpointHook

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, inputs, mode='tensor'):
        if mode == 'loss':
            return dict(loss=(self.w - 1).pow(2).sum())
        return [dict(pred=self.w.detach())]


class _NullMetric(BaseMetric):
    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        return dict(score=0.0)


class _Recorder(Hook):
    def __init__(self):
        self.val_iters = []

    def after_val_epoch(self, runner, metrics=None):
        self.val_iters.append(runner.iter)


def test_eval_and_checkpoints_at_paper_iterations(tmp_path):
    sched = Config.fromfile(osp.join(ROOT, 'configs/_base_/schedules/iter_3.5k.py'))
    runtime = Config.fromfile(osp.join(ROOT, 'configs/_base_/default_runtime.py'))
    ckpt_cfg = dict(runtime.default_hooks.checkpoint)
    assert ckpt_cfg.pop('type') == 'MilestoneCheckpointHook'
    ckpt_cfg.pop('_scope_', None)
    recorder = _Recorder()
    # InfiniteSampler: mmengine sleeps 2 s whenever an iteration-based loop restarts a finite loader
    loader = dict(dataset=[dict(inputs=torch.zeros(1))] * 2, sampler=dict(type='InfiniteSampler', shuffle=False),
                  batch_size=1, collate_fn=dict(type='default_collate'))
    val_loader = dict(loader, sampler=dict(type='DefaultSampler', shuffle=False))
    runner = Runner(
        model=_Toy(), work_dir=str(tmp_path), train_dataloader=loader, val_dataloader=val_loader,
        val_evaluator=[_NullMetric()], val_cfg=dict(type='ValLoop'),
        train_cfg=sched.train_cfg, optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.001)),
        default_scope='mmengine',
        default_hooks=dict(checkpoint=MilestoneCheckpointHook(**ckpt_cfg),
                           logger=dict(type='LoggerHook', interval=10000)),
        custom_hooks=[recorder], env_cfg=dict(dist_cfg=dict(backend='gloo')))
    runner.train()
    assert recorder.val_iters == [1500, 2000, 3500]
    assert sorted(p.name for p in tmp_path.glob('iter_*.pth')) == ['iter_1500.pth', 'iter_2000.pth',
                                                                  'iter_3500.pth']
