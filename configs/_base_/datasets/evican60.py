# EVICAN60 prepared by `scripts/dataset_converters/prepare_evican.py <release> data/evican60`.
# val = the fully annotated eval split (per difficulty level, as the paper reports); train/val of the
# release are only partially annotated, so AP on them under-counts (see docs/data.md).
dataset_type = 'EvicanDataset'
data_root = 'data/evican60/'
backend_args = None
subset = 'all'  # 'cell' (setting 1), 'nucleus' (setting 2), 'all' (setting 3)
# Any bit depth reaches the model as 'deepcis predict' reads it: files are read as stored ('unchanged',
# not mmcv's 8-bit 'color' read) and NormalizeIntensity applies the one rule (docs/training_and_data_checks.md).

train_pipeline = [
    dict(type='LoadImageFromFile', color_type='unchanged', backend_args=backend_args),
    dict(type='NormalizeIntensity'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # multi-scale training, shorter side 440-620 px (authors' config)
    dict(type='RandomChoiceResize', scales=[(2000, s) for s in range(440, 621, 20)], keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='unchanged', backend_args=backend_args),
    dict(type='NormalizeIntensity'),
    dict(type='Resize', scale=(2000, 530), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        subset=subset,
        ann_file='annotations/instances_train.json',
        data_prefix=dict(img='images/train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=8),
        pipeline=train_pipeline,
        backend_args=backend_args))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        subset=subset,
        ann_file='annotations/instances_eval.json',
        data_prefix=dict(img='images/eval/'),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args))
test_dataloader = val_dataloader

val_evaluator = dict(
    # COCO bbox/segm per difficulty level, per class, class-agnostic, culture accuracy
    type='DifficultyCocoMetric',
    ann_file=data_root + 'annotations/instances_eval.json',
    metric=['bbox', 'segm'],
    # maxDets: EVICAN images are dense; mmdet's default 100 detections would cap recall
    proposal_nums=(100, 1000, 3000),
    format_only=False,
    backend_args=backend_args)
test_evaluator = val_evaluator
