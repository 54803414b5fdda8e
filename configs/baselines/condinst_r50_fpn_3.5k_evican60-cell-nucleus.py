# Baseline: mmdet's CondInst R50-FPN (one-stage, conditional mask convolutions on FCOS) on EVICAN60
# setting 3 (cells and nuclei, 60 classes). A delta over mmdet's own config: its model, multi-scale
# augmentation and SGD recipe stay; data, evaluator (DifficultyCocoMetric, up to 3000 detections per
# image) and the DeepCIS budget of 3,500 iterations x 16 images change. Nothing is downloaded at run
# time: the torchvision ImageNet ResNet-50 is read from checkpoints/ (see docs/evaluation_and_comparison.md),
# or train from scratch with --cfg-options model.backbone.init_cfg=None.
_base_ = 'mmdet::condinst/condinst_r50_fpn_ms-poly-90k_coco_instance.py'
custom_imports = dict(imports=['deepcis_mm'], allow_failed_imports=False)

data_root = 'data/evican60/'
max_iters = 3500
model = dict(
    backbone=dict(init_cfg=dict(checkpoint='checkpoints/resnet50-0676ba61.pth')),
    bbox_head=dict(num_classes=60),
    # dense images: keep more detections than COCO's 100
    test_cfg=dict(nms_pre=3000, max_per_img=1000))

# EVICAN60 over the recipe's COCO data: configs/_base_/datasets/evican60.py cannot be listed beside the
# recipe (mmengine refuses one key from two bases); tests/test_baselines.py holds these values and the
# schedule below to it and configs/_base_/schedules/iter_3.5k.py
evican = dict(type='EvicanDataset', data_root=data_root, subset='all')
train_dataloader = dict(
    dataset=dict(ann_file='annotations/instances_train.json', data_prefix=dict(img='images/train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8), **evican))
val_dataloader = dict(
    dataset=dict(ann_file='annotations/instances_eval.json', data_prefix=dict(img='images/eval/'), **evican))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='DifficultyCocoMetric', ann_file=data_root + 'annotations/instances_eval.json',
                     metric=['bbox', 'segm'], proposal_nums=(100, 1000, 3000))
test_evaluator = val_evaluator

# the DeepCIS schedule: 3,500 iterations, evaluations at 1,500 / 2,000 / 3,500
train_cfg = dict(max_iters=max_iters, val_begin=1500, val_interval=500, dynamic_intervals=[(2002, max_iters)])
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[2800], gamma=0.1),
]
default_hooks = dict(
    checkpoint=dict(_delete_=True, type='MilestoneCheckpointHook', milestones=[1500, 2000, 3500], save_last=True,
                    max_keep_ckpts=-1))
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='APTableHook')]
