"""Hook used by tests/test_slow.py: each rank writes what it trained (imported via custom_imports)."""
import json
import os.path as osp

import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook


@HOOKS.register_module()
class DistProbeHook(Hook):
    def after_train(self, runner):
        model = runner.model
        params = torch.cat([p.detach().flatten() for p in model.parameters()])
        with open(osp.join(runner.work_dir, f'rank{get_rank()}.json'), 'w') as f:
            json.dump(dict(rank=get_rank(), world_size=get_world_size(), wrapper=type(model).__name__,
                           iter=runner.iter, checksum=float(params.double().sum()),
                           n_params=int(params.numel())), f)
