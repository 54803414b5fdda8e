"""Cascade R-CNN that hands its dataset's class table to an image-culture RoI head."""
from typing import Optional

from mmdet.models.detectors import CascadeRCNN
from mmdet.registry import MODELS

from ..datasets.categories import class_table


@MODELS.register_module()
class ImageCultureCascadeRCNN(CascadeRCNN):
    """:class:`CascadeRCNN` whose ``dataset_meta`` (set by DatasetMetaHook, or by the Predictor from the
    checkpoint) also sets the culture and kind of every label on the RoI head
    (:class:`ImageCultureCascadeRoIHead`), so class meaning has one source: the data."""

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self.__dict__.get('_dataset_meta')

    @dataset_meta.setter
    def dataset_meta(self, meta: Optional[dict]) -> None:
        self.__dict__['_dataset_meta'] = meta
        if meta is not None:
            self.roi_head.set_class_table(*class_table(meta))
