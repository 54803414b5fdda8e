# Baseline: stock mmdet Cascade Mask R-CNN R50-FPN (mask head at every stage) on EVICAN60 setting 3.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    '../_base_/datasets/evican60.py',
    '../_base_/schedules/iter_3.5k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    roi_head=dict(
        bbox_head=[
            dict(
                type='Shared2FCBBoxHead',
                in_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=60,
                reg_class_agnostic=True,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=stds),
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
        ],
        mask_head=dict(num_classes=60)),
    test_cfg=dict(rpn=dict(nms_pre=6000, max_per_img=3000), rcnn=dict(max_per_img=3000)))
