"""Checkpoint at chosen iterations (the paper's 1,500 / 2,000 / 3,500) instead of a fixed interval."""
from typing import Optional, Sequence

from mmdet.registry import HOOKS
from mmengine.hooks import CheckpointHook


@HOOKS.register_module()
class MilestoneCheckpointHook(CheckpointHook):
    """:class:`mmengine.hooks.CheckpointHook` that saves after the iterations in ``milestones``.

    Everything else (``save_last``, ``save_best``, ``max_keep_ckpts``, resume files) is upstream's.
    With ``milestones=None`` it is the plain interval hook.
    """

    def __init__(self, milestones: Optional[Sequence[int]] = None, **kwargs):
        kwargs.setdefault('by_epoch', False)
        super().__init__(**kwargs)
        self.milestones = sorted(set(int(m) for m in milestones)) if milestones else None

    def every_n_train_iters(self, runner, n: int, start: int = 0) -> bool:
        if self.milestones is None:
            return super().every_n_train_iters(runner, n, start)
        return runner.iter + 1 in self.milestones
