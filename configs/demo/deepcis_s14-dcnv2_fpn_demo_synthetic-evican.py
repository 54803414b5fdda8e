# CPU-scale DeepCIS for the demo (2 cores, minutes): the same family as the paper's model (ResNeSt with
# split attention + DCNv2, FPN, per-level pixel-size anchors, 3-stage Cascade with the mask branch at
# the last stage), scaled down: ResNeSt-14 with 16 base channels, DCNv2 in stages 3-4 (mmcv's CPU
# DCN backward is ~60% of a step with stages 2-4), BN, 256 px images, and the CPU-scale FPN, heads and
# sampling shared with the R18 baselines (../_base_/models/cpu_scale.py). Data: synthetic EVICAN
# (4 cultures, 8 classes).
_base_ = [
    '../_base_/models/deepcis_cascade-mask-rcnn_s200-dcnv2_fpn.py',
    '../_base_/models/cpu_scale.py',
    '../_base_/datasets/synthetic_evican_demo.py',
    '../_base_/schedules/demo_450it.py',
    '../_base_/demo_runtime.py',
]
num_cultures = 4
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    backbone=dict(
        type='ResNeStSmall', depth=14, stem_channels=32, base_channels=16, norm_cfg=norm_cfg,
        dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, False, True, True), init_cfg=None),
    # the paper base's normalised FPN and 4-conv mask head run without norm here
    neck=dict(_base_.cpu_scale.neck, in_channels=[64, 128, 256, 512], norm_cfg=None),
    rpn_head=_base_.cpu_scale.rpn_head,
    roi_head=dict(
        num_classes=2 * num_cultures,
        bbox_roi_extractor=_base_.cpu_scale.bbox_roi_extractor,
        bbox_head=[
            dict(
                type='Shared2FCBBoxHead',
                reg_class_agnostic=True,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=stds),
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0),
                **_base_.cpu_scale.bbox_head)
            for stds in _base_.cascade_target_stds  # the three cascade stages' target stds
        ],
        mask_roi_extractor=_base_.cpu_scale.mask_roi_extractor,
        mask_head=dict(_base_.cpu_scale.mask_head, norm_cfg=None)),
    train_cfg=dict(
        _base_.cpu_scale.train_cfg,
        # mmdet's three cascade stages (IoU 0.5 / 0.6 / 0.7), fewer sampled RoIs
        rcnn=[dict(stage, sampler=dict(stage.sampler, **_base_.cpu_scale.rcnn_sampler))
              for stage in _base_.model.train_cfg.rcnn]),
    test_cfg=_base_.cpu_scale.test_cfg)
