"""The detector carries its data's class meaning: ``model.dataset_meta`` (classes, cultures, kinds)."""
from typing import Optional

from mmdet.registry import HOOKS
from mmengine.hooks import Hook


def set_dataset_meta(model, dataset_meta: Optional[dict]) -> None:
    """``model.dataset_meta = dataset_meta`` (mmdet's convention, as ``init_detector`` does; a DDP
    wrapper's ``.module`` gets it). Submodules that read class meaning declare a ``dataset_meta``
    attribute (e.g. :class:`~deepcis_mm.models.LastStageMaskCascadeRoIHead`) and get the same dict, so
    they are given it once instead of through every image's meta."""
    model = getattr(model, 'module', model)
    meta = dict(dataset_meta) if dataset_meta is not None else None
    model.dataset_meta = meta
    for module in model.modules():
        if module is not model and hasattr(module, 'dataset_meta'):
            module.dataset_meta = meta


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
