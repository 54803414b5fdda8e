"""The model carries its dataset's class meaning (``model.dataset_meta``: classes, cultures, kinds)."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


def _set_meta(runner, loader) -> None:
    dataset = getattr(loader, 'dataset', None)
    meta = getattr(dataset, 'metainfo', None)
    if meta is None:
        return
    model = runner.model
    model = getattr(model, 'module', model)  # DDP wrapper
    model.dataset_meta = dict(meta)


@HOOKS.register_module()
class DatasetMetaHook(Hook):
    """Set ``model.dataset_meta`` from the train dataset before training and from the val/test
    dataset before evaluation, so that model parts that need class meaning (e.g. the image-level
    culture branch) read one source: the data the model is run on."""

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        _set_meta(runner, runner.train_dataloader)

    def before_val(self, runner) -> None:
        _set_meta(runner, runner.val_dataloader)

    def before_test(self, runner) -> None:
        _set_meta(runner, runner.test_dataloader)
