# CPU-scale DeepCIS for the demo (2 cores, minutes): the same family as the paper's model (ResNeSt with
# split attention + DCNv2 in stages 2-4, FPN, per-level pixel-size anchors, 3-stage Cascade with the
# mask branch at the last stage), scaled down: ResNeSt-14 with 16 base channels, 64-channel FPN,
# light 2-FC box heads, few sampled RoIs, 256 px images, BN. Data: synthetic EVICAN (4 cultures).
_base_ = [
    '../_base_/models/deepcis_cascade-mask-rcnn_s200-dcnv2_fpn.py',
    '../_base_/datasets/evican60.py',
    '../_base_/default_runtime.py',
]
num_cultures = 4
norm_cfg = dict(type='BN', requires_grad=True)
channels = 64

model = dict(
    backbone=dict(
        type='ResNeStSmall', depth=14, stem_channels=32, base_channels=16, norm_cfg=norm_cfg,
        dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False), init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=channels, norm_cfg=None),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        num_classes=2 * num_cultures,
        bbox_roi_extractor=dict(roi_layer=dict(output_size=7), out_channels=channels),
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
            for stds in [[0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]]
        ],
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(num_convs=2, in_channels=channels, conv_out_channels=channels, norm_cfg=None)),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=128)),
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=[
            dict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou, min_pos_iou=iou,
                              match_low_quality=False, ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=64, pos_fraction=0.25, neg_pos_ub=-1,
                             add_gt_as_proposals=True),
                mask_size=28, pos_weight=-1, debug=False)
            for iou in (0.5, 0.6, 0.7)
        ]),
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300), rcnn=dict(max_per_img=200)))

data_root = 'data/synthetic_evican_prepared/'
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=[(512, 224), (512, 256), (512, 288)], keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 256), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2, num_workers=1, persistent_workers=True,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1, persistent_workers=True, dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_eval.json')
test_evaluator = val_evaluator

max_iters = 600
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(0.8 * max_iters)]),
]
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(milestones=None, interval=max_iters, max_keep_ckpts=2))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
