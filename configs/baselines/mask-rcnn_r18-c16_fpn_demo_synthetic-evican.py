# CPU-scale Mask R-CNN baseline for the demo data and budget: ResNet-18 with 16 base channels and the
# DeepCIS demo model's CPU-scale FPN, heads and sampling (../_base_/models/cpu_scale.py).
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    '../_base_/models/cpu_scale.py',
    '../_base_/datasets/synthetic_evican_demo.py',
    '../_base_/schedules/demo_450it.py',
    '../_base_/demo_runtime.py',
]
num_classes = 8
model = dict(
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(_base_.cpu_scale.neck, in_channels=[16, 32, 64, 128]),
    rpn_head=_base_.cpu_scale.rpn_head,
    roi_head=dict(
        bbox_roi_extractor=_base_.cpu_scale.bbox_roi_extractor,
        bbox_head=dict(_base_.cpu_scale.bbox_head, num_classes=num_classes),
        mask_roi_extractor=_base_.cpu_scale.mask_roi_extractor,
        mask_head=dict(_base_.cpu_scale.mask_head, num_classes=num_classes)),
    train_cfg=dict(_base_.cpu_scale.train_cfg, rcnn=dict(sampler=_base_.cpu_scale.rcnn_sampler)),
    test_cfg=_base_.cpu_scale.test_cfg)
