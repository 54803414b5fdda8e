# CPU-scale RTMDet-Ins for the demo data and budget (`scripts/analysis_tools/benchmark.py accuracy`): mmdet's
# RTMDet-Ins-tiny model and AdamW recipe from scratch, with the demo's data, pipeline, 450 iterations
# x 2 images, seed 0 and evaluator, like the other CPU baselines. No pretrained weights.
# mmdet's recipe brings its own data/schedule/runtime keys and mmengine refuses one key from two bases,
# so the demo's bases cannot be listed beside it: their values are restated below, and
# tests/test_baselines.py holds them equal to configs/_base_/{datasets/synthetic_evican_demo,
# schedules/demo_450it,demo_runtime}.py.
_base_ = 'mmdet::rtmdet/rtmdet-ins_tiny_8xb32-300e_coco.py'
custom_imports = dict(imports=['deepcis_mm'], allow_failed_imports=False)

data_root = 'data/synthetic_evican_prepared/'
max_iters = 450
model = dict(
    # upstream pads every image to 640 in its pipeline; here the batch pads images and masks alike
    data_preprocessor=dict(pad_size_divisor=32, pad_mask=True),
    backbone=dict(init_cfg=None),
    bbox_head=dict(num_classes=8),
    test_cfg=dict(max_per_img=200))  # as the other CPU models

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
evican = dict(type='EvicanDataset', data_root=data_root, subset='all')
train_dataloader = dict(
    batch_size=2, num_workers=1, persistent_workers=True, pin_memory=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(ann_file='annotations/instances_train.json', data_prefix=dict(img='images/train/'),
                 filter_cfg=dict(filter_empty_gt=True, min_size=8), pipeline=train_pipeline, **evican))
val_dataloader = dict(
    batch_size=1, num_workers=1, persistent_workers=True, pin_memory=False,
    dataset=dict(ann_file='annotations/instances_eval.json', data_prefix=dict(img='images/eval/'),
                 pipeline=test_pipeline, **evican))
test_dataloader = val_dataloader
val_evaluator = dict(_delete_=True, type='DifficultyCocoMetric', ann_file=data_root + 'annotations/instances_eval.json',
                     metric=['bbox', 'segm'], proposal_nums=(100, 1000, 3000))
test_evaluator = val_evaluator

# the demo budget (configs/_base_/schedules/demo_450it.py) with the recipe's AdamW
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(0.8 * max_iters)]),
]
default_hooks = dict(logger=dict(interval=20), checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
custom_hooks = [dict(type='NumClassCheckHook'), dict(type='APTableHook')]
randomness = dict(seed=0)
