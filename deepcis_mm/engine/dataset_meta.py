"""The detector carries its data's class meaning: ``model.dataset_meta`` (classes, cultures, kinds)."""
from typing import Optional


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
