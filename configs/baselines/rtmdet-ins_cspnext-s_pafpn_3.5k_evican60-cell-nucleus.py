# Baseline: mmdet's RTMDet-Ins-S (one-stage, dynamic mask kernels) on EVICAN60 setting 3 (cells and
# nuclei, 60 classes). A delta over mmdet's own config: its model, augmentation and AdamW recipe stay;
# data, evaluator (DifficultyCocoMetric, up to 3000 detections per image) and the DeepCIS budget of
# 3,500 iterations x 16 images (8 GPUs x 2) change. Nothing is downloaded at run time: the ImageNet
# CSPNeXt-S backbone is read from checkpoints/ (docs/evaluation_and_comparison.md says where to get it),
# or train from scratch with --cfg-options model.backbone.init_cfg=None.
_base_ = 'mmdet::rtmdet/rtmdet-ins_s_8xb32-300e_coco.py'
custom_imports = dict(imports=['deepcis_mm'], allow_failed_imports=False)

data_root = 'data/evican60/'
max_iters = 3500
model = dict(
    backbone=dict(init_cfg=dict(checkpoint='checkpoints/cspnext-s_imagenet_600e.pth')),
    bbox_head=dict(num_classes=60),
    # dense images: keep more detections than COCO's 100 (as the CondInst baseline)
    test_cfg=dict(nms_pre=3000, max_per_img=1000))

# EVICAN60 over the recipe's COCO data: configs/_base_/datasets/evican60.py cannot be listed beside the
# recipe (mmengine refuses one key from two bases); tests/test_baselines.py holds these values and the
# schedule below to it and configs/_base_/schedules/iter_3.5k.py
evican = dict(type='EvicanDataset', data_root=data_root, subset='all')
train_dataloader = dict(
    batch_size=2, num_workers=2, sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(ann_file='annotations/instances_train.json', data_prefix=dict(img='images/train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8), **evican))
val_dataloader = dict(
    batch_size=1, num_workers=2,
    dataset=dict(ann_file='annotations/instances_eval.json', data_prefix=dict(img='images/eval/'), **evican))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='DifficultyCocoMetric', ann_file=data_root + 'annotations/instances_eval.json',
                     metric=['bbox', 'segm'], proposal_nums=(100, 1000, 3000))
test_evaluator = val_evaluator

# the DeepCIS schedule (iterations, evaluations at 1,500 / 2,000 / 3,500) with the recipe's AdamW:
# linear warm-up, then the recipe's cosine decay over the second half
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_begin=1500, val_interval=500,
                 dynamic_intervals=[(2002, max_iters)])
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0e-5, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0.004 * 0.05, by_epoch=False, begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2),
]
auto_scale_lr = dict(base_batch_size=256)  # the recipe's lr 0.004 is for 8 x 32 images (--auto-scale-lr)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(_delete_=True, type='MilestoneCheckpointHook', milestones=[1500, 2000, 3500], save_last=True,
                    max_keep_ckpts=-1))
log_processor = dict(by_epoch=False)
# the recipe's EMA; its epoch-based pipeline switch does not apply to an iteration schedule
custom_hooks = [
    dict(type='EMAHook', ema_type='ExpMomentumEMA', momentum=0.0002, update_buffers=True, priority=49),
    dict(type='NumClassCheckHook'),
    dict(type='APTableHook'),
]
