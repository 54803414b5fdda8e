"""A hook for tests/test_slow.py: end the process right after the checkpoint of a chosen iteration,
as a kill would (no after_train/after_run hooks)."""
import multiprocessing
import os

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class StopAfterIterHook(Hook):
    priority = 'LOWEST'  # after CheckpointHook (VERY_LOW) has written iter_k.pth

    def __init__(self, stop_after: int = 3):
        self.stop_after = stop_after

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.stop_after:
            for worker in multiprocessing.active_children():  # data-loader workers die with it
                worker.kill()
            os._exit(17)
