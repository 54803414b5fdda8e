"""Checkpoint against model and data when the runner loads it: a summary for ``load_from`` in
training, strict for resume, the class list for testing; and the same class list for training and
validation data."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import BaseLoop

from ..checkpoint_fit import CheckpointMismatch, check_checkpoint_fits, partial_load_summary


def _classes_of(loop) -> tuple:
    ds = getattr(getattr(loop, 'dataloader', None), 'dataset', None)
    return tuple((getattr(ds, 'metainfo', None) or {}).get('classes') or ())


def _difference(a: tuple, b: tuple, name_a: str, name_b: str) -> str:
    """The first difference of two class lists in words ('' if equal or either is unknown)."""
    if not a or not b or a == b:
        return ''
    if len(a) == len(b):
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        order = f' (same {len(a)} classes in another order?)' if sorted(a) == sorted(b) else ''
        return f'label {i} is {a[i]!r} in {name_a} but {b[i]!r} in {name_b}{order}'
    return f'{len(a)} classes in {name_a}, {len(b)} in {name_b}'


@HOOKS.register_module()
class CheckpointFitHook(Hook):
    """What mmengine's ``strict=False`` loading lets through, per use:

    - training with ``load_from`` (e.g. COCO weights for another class count) keeps partial loading:
      tensors that do not fit keep their fresh initialisation, and one line names the re-initialised
      modules instead of mmengine's per-tensor warnings;
    - a resumed checkpoint (the run's own) must fit exactly;
    - testing: the weights were checked before the runner was built (tools/test.py); here the
      checkpoint's class names (``meta.dataset_meta.classes``) must equal the test data's, in order:
      the same class count in another order would score every class against another's ground truth;
    - training: the validation data must list the training data's classes in the same order (each
      annotation file sets its own label order), for the same reason.
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

    def before_train(self, runner) -> None:
        train = _classes_of(runner.train_loop)
        val = _classes_of(runner.val_loop) if isinstance(runner._val_loop, BaseLoop) else ()
        what = _difference(train, val, 'the training data', 'the validation data')
        if what:
            raise CheckpointMismatch(f'labels of training and validation data differ: {what}; list the '
                                     f'categories of both annotation files in the same order')

    @staticmethod
    def _check_classes(runner, checkpoint: dict, source: str) -> None:
        saved = tuple(((checkpoint.get('meta') or {}).get('dataset_meta') or {}).get('classes') or ())
        for loop in (runner._test_loop, runner._val_loop):
            data = _classes_of(loop) if isinstance(loop, BaseLoop) else ()
            what = _difference(saved, data, 'the checkpoint', 'the data')
            if what:
                raise CheckpointMismatch(f'checkpoint {source} was trained on other classes than the '
                                         f'data set: {what}')
