# CPU-scale DeepCIS for the demo (2 cores, minutes): the same family as the paper's model (ResNeSt with
# split attention + DCNv2, FPN, per-level pixel-size anchors, 3-stage Cascade with the mask branch at
# the last stage), scaled down: ResNeSt-14 with 16 base channels, DCNv2 in stages 3-4 (mmcv's CPU
# DCN backward is ~60% of a step with stages 2-4), 64-channel FPN, light 2-FC box heads, few sampled
# RoIs, 256 px images, BN. Data: synthetic EVICAN (4 cultures, 8 classes).
_base_ = [
    '../_base_/models/deepcis_cascade-mask-rcnn_s200-dcnv2_fpn.py',
    '../_base_/datasets/synthetic_evican_demo.py',
    '../_base_/schedules/demo_450it.py',
    '../_base_/demo_runtime.py',
]
num_cultures = 4
norm_cfg = dict(type='BN', requires_grad=True)
channels = 64

model = dict(
    backbone=dict(
        type='ResNeStSmall', depth=14, stem_channels=32, base_channels=16, norm_cfg=norm_cfg,
        dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
        stage_with_dcn=(False, False, True, True), init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=channels, norm_cfg=None),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        num_classes=2 * num_cultures,
        bbox_roi_extractor=dict(roi_layer=dict(output_size=7, sampling_ratio=2), out_channels=channels),
        bbox_head=[
            dict(
                type='Shared2FCBBoxHead',
                in_channels=channels,
                fc_out_channels=256,
                roi_feat_size=7,
                reg_class_agnostic=True,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=stds),
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in _base_.cascade_target_stds  # the three cascade stages' target stds
        ],
        mask_roi_extractor=dict(roi_layer=dict(sampling_ratio=2), out_channels=channels),
        mask_head=dict(num_convs=2, in_channels=channels, conv_out_channels=channels, norm_cfg=None)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=256)),
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        # mmdet's three cascade stages (IoU 0.5 / 0.6 / 0.7), 128 sampled RoIs per image
        rcnn=[dict(stage, sampler=dict(stage.sampler, num=128)) for stage in _base_.model.train_cfg.rcnn]),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300), rcnn=dict(max_per_img=200)))
