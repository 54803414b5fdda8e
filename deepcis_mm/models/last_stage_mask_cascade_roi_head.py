"""Cascade RoI head with the mask branch at the last stage only (as in the DeepCIS paper)."""
import copy
from typing import List, Optional, Tuple

import torch.nn as nn
from mmdet.models.roi_heads import CascadeRoIHead
from mmdet.models.task_modules.samplers import SamplingResult
from mmdet.models.utils import empty_instances
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmdet.utils import InstanceList
from torch import Tensor

from ..datasets.categories import class_table
from .culture_consensus import apply_culture_consensus


@MODELS.register_module()
class LastStageMaskCascadeRoIHead(CascadeRoIHead):
    """mmdet's :class:`CascadeRoIHead` trains and runs a mask head at every stage and averages them;
    here one mask head sits on the last stage: trained on its samples (loss key ``s{N-1}.loss_mask``)
    and used alone at test time. A list ``mask_head`` config uses its last entry.

    Args:
        num_classes: if given, set on every bbox head and the mask head, so that a setting (30 or 60
            classes) or ``--cfg-options model.roi_head.num_classes=N`` changes one number.

    Test-time option ``test_cfg.rcnn.culture_consensus=True``: each image's detections vote (score
    weighted) for one culture and are relabelled to it, keeping their kind (EVICAN images hold one
    culture; leave it off for co-cultures). The culture and kind of each label come from the
    detector's ``dataset_meta``, handed to this head once by
    :func:`~deepcis_mm.engine.set_dataset_meta` (DatasetMetaHook in tools/, checkpoint loading in
    ``deepcis predict``).
    """

    dataset_meta: Optional[dict] = None  # set with the detector's (set_dataset_meta)

    def __init__(self, *args, num_classes: Optional[int] = None, **kwargs):
        if num_classes is not None:
            for key in ('bbox_head', 'mask_head'):
                if kwargs.get(key) is None:
                    continue
                heads = copy.deepcopy(kwargs[key])
                for head in heads if isinstance(heads, list) else [heads]:
                    head['num_classes'] = num_classes
                kwargs[key] = heads
        super().__init__(*args, **kwargs)

    def init_mask_head(self, mask_roi_extractor, mask_head) -> None:
        last = (lambda cfg: cfg[-1] if isinstance(cfg, list) else cfg)
        self.mask_head = nn.ModuleList([MODELS.build(last(mask_head))])
        if mask_roi_extractor is not None:
            self.share_roi_extractor = False
            self.mask_roi_extractor = nn.ModuleList([MODELS.build(last(mask_roi_extractor))])
        else:
            self.share_roi_extractor = True
            self.mask_roi_extractor = self.bbox_roi_extractor

    def _mask_forward(self, stage: int, x: Tuple[Tensor], rois: Tensor) -> dict:
        # every stage index maps to the one mask head (upstream's tensor-mode forward stays valid)
        extractor = self.mask_roi_extractor[-1]
        mask_feats = extractor(x[:extractor.num_inputs], rois)
        return dict(mask_preds=self.mask_head[-1](mask_feats))

    def mask_loss(self, stage: int, x: Tuple[Tensor], sampling_results: List[SamplingResult],
                  batch_gt_instances: InstanceList) -> dict:
        if stage != self.num_stages - 1:
            return dict(loss_mask={})  # no mask branch before the last stage
        pos_rois = bbox2roi([res.pos_priors for res in sampling_results])
        mask_results = self._mask_forward(stage, x, pos_rois)
        mask_results.update(self.mask_head[-1].loss_and_target(
            mask_preds=mask_results['mask_preds'], sampling_results=sampling_results,
            batch_gt_instances=batch_gt_instances, rcnn_train_cfg=self.train_cfg[stage]))
        return mask_results

    def predict(self, x, rpn_results_list, batch_data_samples, rescale: bool = False) -> InstanceList:
        results_list = super().predict(x, rpn_results_list, batch_data_samples, rescale=rescale)
        if self.test_cfg is not None and self.test_cfg.get('culture_consensus', False):
            if self.dataset_meta is None:
                raise ValueError('culture_consensus needs the class table: set model.dataset_meta with '
                                 'deepcis_mm.engine.set_dataset_meta (tools/ and deepcis predict do)')
            table = class_table(self.dataset_meta)
            results_list = [apply_culture_consensus(res, table, self.test_cfg.nms) for res in results_list]
        return results_list

    def predict_mask(self, x: Tuple[Tensor], batch_img_metas: List[dict], results_list: InstanceList,
                     rescale: bool = False) -> InstanceList:
        mask_rois = bbox2roi([res.bboxes for res in results_list])
        if mask_rois.shape[0] == 0:
            return empty_instances(batch_img_metas, mask_rois.device, task_type='mask',
                                   instance_results=results_list,
                                   mask_thr_binary=self.test_cfg.mask_thr_binary)
        mask_preds = self._mask_forward(self.num_stages - 1, x, mask_rois)['mask_preds']
        mask_preds = mask_preds.split([len(res) for res in results_list], 0)
        return self.mask_head[-1].predict_by_feat(
            mask_preds=mask_preds, results_list=results_list, batch_img_metas=batch_img_metas,
            rcnn_test_cfg=self.test_cfg, rescale=rescale)
