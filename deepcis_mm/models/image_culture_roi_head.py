"""Last-stage-mask cascade RoI head with an image-level culture branch beside it."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.utils import InstanceList
from torch import Tensor

from ..datasets.categories import class_table
from .culture_combination import combine_class_probs, culture_index
from .last_stage_mask_cascade_roi_head import LastStageMaskCascadeRoIHead

KIND_INDEX = {'cell': 0, 'nucleus': 1}


@MODELS.register_module()
class ImageCultureCascadeRoIHead(LastStageMaskCascadeRoIHead):
    """:class:`LastStageMaskCascadeRoIHead` plus an :class:`ImageCultureHead` on the same FPN levels.

    The RoI head keeps the paper's (culture, kind) classes; the image head learns each image's culture
    (``loss_img_culture``, one model, one training). At test time the image posterior is written to each
    sample's metainfo (``image_culture_probs``, ``image_cultures``) and, with
    ``test_cfg.rcnn.image_culture=dict(mode='product'|'image'|'none', weight=1.0, window=None)``, combined
    with every box's full class-score vector before NMS (:func:`combine_class_probs`); with ``window``
    (a fraction of the image's shorter side) each box takes the culture of the window around it
    (:meth:`ImageCultureHead.predict_windows`) instead of the whole image's. The class table (culture
    and kind per label) comes from the detector's ``dataset_meta``, handed down by
    :func:`~deepcis_mm.engine.set_dataset_meta`.
    """

    def __init__(self, *args, img_culture_head: dict, **kwargs):
        self.cultures: Optional[tuple] = None
        self.label_culture: Optional[tuple] = None
        self.label_kind: Optional[tuple] = None
        super().__init__(*args, **kwargs)
        # built on a forked RNG: the detector's initialization and its training's random draws stay
        # those of the paper-faithful model, so the two differ by the branch alone
        with torch.random.fork_rng(devices=[]):
            self.img_culture_head = MODELS.build(img_culture_head)

    @property
    def dataset_meta(self) -> Optional[dict]:
        return self.__dict__.get('_dataset_meta')

    @dataset_meta.setter
    def dataset_meta(self, meta: Optional[dict]) -> None:
        """The detector's class meaning (:func:`~deepcis_mm.engine.set_dataset_meta`): checked against
        the image head and turned into culture and kind indices per label."""
        self.__dict__['_dataset_meta'] = meta
        self.cultures = self.label_culture = self.label_kind = None
        if not meta:
            return
        cultures, kinds = class_table(meta)
        names, index = culture_index(cultures)
        n = self.img_culture_head.num_cultures
        if len(names) != n:
            raise ValueError(f'ImageCultureHead has num_cultures={n} but the dataset has {len(names)} '
                             f'culture(s) {list(names)[:8]}: set model.roi_head.img_culture_head.num_cultures')
        self.cultures, self.label_culture = names, index
        self.label_kind = tuple(KIND_INDEX[k] for k in kinds)

    def _check_table(self) -> None:
        if self.label_culture is None:
            raise RuntimeError('ImageCultureCascadeRoIHead: no class table; set model.dataset_meta with '
                               'deepcis_mm.engine.set_dataset_meta (tools/ and deepcis predict do)')

    def loss(self, x: Tuple[Tensor], rpn_results_list: InstanceList, batch_data_samples) -> dict:
        self._check_table()
        losses = super().loss(x, rpn_results_list, batch_data_samples)
        labels = [s.gt_instances.labels for s in batch_data_samples]
        losses.update(self.img_culture_head.loss(x, labels, self.label_culture))
        return losses

    def predict(self, x: Tuple[Tensor], rpn_results_list: InstanceList, batch_data_samples,
                rescale: bool = False) -> InstanceList:
        self._check_table()
        probs = self.img_culture_head.predict(x)
        for sample, p in zip(batch_data_samples, probs):
            sample.set_metainfo(dict(image_culture_probs=p.tolist(), image_cultures=self.cultures))
        return super().predict(x, rpn_results_list, batch_data_samples, rescale=rescale)

    def _refine_roi(self, x: Tuple[Tensor], rois: Tensor, batch_img_metas: List[dict],
                    num_proposals_per_img: Sequence[int], **kwargs) -> tuple:
        rois, cls_scores, bbox_preds = super()._refine_roi(x, rois, batch_img_metas, num_proposals_per_img,
                                                           **kwargs)
        opt = dict((self.test_cfg or {}).get('image_culture') or {}) if not self.training else {}
        unknown = sorted(set(opt) - {'mode', 'weight', 'window'})
        if unknown:  # a typo would silently score without the option
            raise ValueError(f'test_cfg.rcnn.image_culture: unknown key(s) {unknown}; known: mode, weight, window')
        mode = opt.get('mode', 'none')
        if mode == 'none' or not all('image_culture_probs' in m for m in batch_img_metas):
            return rois, cls_scores, bbox_preds
        if self.bbox_head[-1].custom_activation or self.bbox_head[-1].loss_cls.use_sigmoid:
            raise ValueError('test_cfg.rcnn.image_culture needs softmax class scores in the last bbox head')
        window = opt.get('window')
        combined = []
        for i, (scores, meta) in enumerate(zip(cls_scores, batch_img_metas)):
            if window:  # each box's regional culture (co-cultures in regions), else the whole image's
                image_probs = self.img_culture_head.predict_windows(
                    x, rois[i][:, 1:], meta['img_shape'][:2], meta['batch_input_shape'][:2], float(window), i)
            else:
                image_probs = scores.new_tensor(meta['image_culture_probs'])
            probs = combine_class_probs(F.softmax(scores, dim=-1), self.label_culture, self.label_kind,
                                        image_probs, mode, float(opt.get('weight', 1.0)))
            # the bbox head applies softmax again: log-probabilities come back unchanged
            combined.append(probs.clamp_min(1e-12).log())
        return rois, combined, bbox_preds
