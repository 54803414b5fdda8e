# CPU-scale stock Cascade Mask R-CNN (mask head at every stage) for the demo data and budget.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    '../_base_/datasets/synthetic_evican_demo.py',
    '../_base_/schedules/demo_450it.py',
    '../_base_/demo_runtime.py',
]
num_classes = 8
channels = 64
model = dict(
    backbone=dict(depth=18, base_channels=16, frozen_stages=-1, norm_eval=False, init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels, roi_layer=dict(sampling_ratio=2)),
        # mmdet's three cascade box heads (their target stds), narrower
        bbox_head=[dict(head, in_channels=channels, fc_out_channels=256, num_classes=num_classes)
                   for head in _base_.model.roi_head.bbox_head],
        mask_roi_extractor=dict(out_channels=channels, roi_layer=dict(sampling_ratio=2)),
        mask_head=dict(num_convs=2, in_channels=channels, conv_out_channels=channels,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=256)),
        rpn_proposal=dict(nms_pre=500, max_per_img=300),
        # mmdet's three cascade stages (IoU 0.5 / 0.6 / 0.7), 128 sampled RoIs per image
        rcnn=[dict(stage, sampler=dict(stage.sampler, num=128)) for stage in _base_.model.train_cfg.rcnn]),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300), rcnn=dict(max_per_img=200)))
