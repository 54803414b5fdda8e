"""One summary line for ``load_from`` in training instead of mmengine's per-tensor warnings."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from ..checkpoint_fit import (CheckpointMismatch, check_checkpoint_fits, partial_load_summary)


@HOOKS.register_module()
class PartialLoadReportHook(Hook):
    """Training with ``load_from`` (e.g. COCO weights for another class count) keeps partial loading:
    tensors that do not fit keep their fresh initialisation, and one line names the re-initialised
    modules. A resumed checkpoint must fit exactly (it is this run's own). Test runs are checked
    before the runner is built (tools/test.py), so the hook leaves them alone.
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not isinstance(runner._train_loop, BaseLoop):  # test/val: checked strictly up front
            return
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        source = runner._load_from or 'the latest checkpoint'
        if runner._resume:
            check_checkpoint_fits(model, checkpoint, source, runner.cfg.filename or 'the config')
            return
        line = partial_load_summary(model, checkpoint, source)
        if line:
            print_log(line, logger='current')


__all__ = ['PartialLoadReportHook', 'CheckpointMismatch']
