"""Checkpoint against model and data when the runner loads it: a summary for ``load_from`` in
training, strict for resume, the class list for testing."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from ..checkpoint_fit import CheckpointMismatch, check_checkpoint_fits, partial_load_summary


def _classes_of(loop) -> tuple:
    ds = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
    return tuple((getattr(ds, 'metainfo', None) or {}).get('classes') or ())


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """What mmengine's ``strict=False`` loading lets through, per use:

    - training with ``load_from`` (e.g. COCO weights for another class count) keeps partial loading:
      tensors that do not fit keep their fresh initialisation, and one line names the re-initialised
      modules instead of mmengine's per-tensor warnings;
    - a resumed checkpoint (the run's own) must fit exactly;
    - testing: the weights were checked before the runner was built (tools/test.py); here the
      checkpoint's class names (``meta.dataset_meta.classes``) must equal the test data's, in order:
      the same class count in another order would score every class against another's ground truth.
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        source = runner._load_from or 'the latest checkpoint'
        config = runner.cfg.filename or 'the config'
        if not isinstance(runner._train_loop, BaseLoop):  # test / val
            self._check_classes(runner, checkpoint, source)
        elif runner._resume:
            check_checkpoint_fits(model, checkpoint, source, config)
        else:
            line = partial_load_summary(model, checkpoint, source)
            if line:
                print_log(line, logger='current')

    @staticmethod
    def _check_classes(runner, checkpoint: dict, source: str) -> None:
        saved = tuple(((checkpoint.get('meta') or {}).get('dataset_meta') or {}).get('classes') or ())
        for loop in (runner._test_loop, runner._val_loop):
            data = _classes_of(loop) if isinstance(loop, BaseLoop) else ()
            if saved and data and saved != data:
                if len(saved) == len(data):
                    i = next(i for i, (a, b) in enumerate(zip(saved, data)) if a != b)
                    what = (f'label {i} is {saved[i]!r} in the checkpoint but {data[i]!r} in the data '
                            f'(same {len(data)} classes in another order?)')
                else:
                    what = f'{len(saved)} classes in the checkpoint, {len(data)} in the data'
                raise CheckpointMismatch(f'checkpoint {source} was trained on other classes than the '
                                         f'data set: {what}')
