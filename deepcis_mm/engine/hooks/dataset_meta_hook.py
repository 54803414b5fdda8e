"""Set ``model.dataset_meta`` from the runner's data before training and each evaluation."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from ..dataset_meta import set_dataset_meta


def _set_from_loader(runner, loader) -> None:
    meta = getattr(getattr(loader, 'dataset', None), 'metainfo', None)
    if meta is not None:
        set_dataset_meta(runner.model, meta)


@HOOKS.register_module()
class DatasetMetaHook(Hook):
    """Set ``model.dataset_meta`` from the train dataset before training and from the val/test
    dataset before each evaluation, so that the model's class meaning (e.g. the culture consensus)
    is the data's. ``build_runner`` adds it to every runner the tools build."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        _set_from_loader(runner, runner.train_dataloader)

    def before_val(self, runner) -> None:
        _set_from_loader(runner, runner.val_dataloader)

    def before_test(self, runner) -> None:
        _set_from_loader(runner, runner.test_dataloader)
