# Synthetic EVICAN for CPU runs (`make demo` writes it): the EVICAN60 pipeline at 256 px.
_base_ = './evican60.py'

data_root = 'data/synthetic_evican_prepared/'
train_pipeline = [
    dict(type='LoadImageFromFile', color_type='unchanged'),
    dict(type='NormalizeIntensity'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=[(512, 224), (512, 256), (512, 288)], keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25], direction=['horizontal', 'vertical']),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', color_type='unchanged'),
    dict(type='NormalizeIntensity'),
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

