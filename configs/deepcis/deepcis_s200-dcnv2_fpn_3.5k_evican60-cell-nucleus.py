# Setting 3: cells and nuclei of 30 cultures, 60 classes (the paper's headline setting).
_base_ = [
    '../_base_/models/deepcis_cascade-mask-rcnn_s200-dcnv2_fpn.py',
    '../_base_/datasets/evican60.py',
    '../_base_/schedules/iter_3.5k.py',
    '../_base_/default_runtime.py',
]
subset = 'all'
model = dict(roi_head=dict(num_classes=60))
train_dataloader = dict(dataset=dict(subset=subset))
val_dataloader = dict(dataset=dict(subset=subset))
test_dataloader = val_dataloader

# The paper initialises from a COCO-trained Cascade Mask R-CNN ResNeSt-200 DCN (detectron2 ResNeSt
# port; not in mmdet's zoo). Default: ImageNet ResNeSt-200 backbone (open-mmlab://resnest200).
# For COCO init set a converted checkpoint here or pass `--cfg-options load_from=PATH`
# (docs/models_and_configs.md, Initialisation).
load_from = None
