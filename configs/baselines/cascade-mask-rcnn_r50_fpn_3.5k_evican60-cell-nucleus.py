# Baseline: stock mmdet Cascade Mask R-CNN R50-FPN (mask head at every stage) on EVICAN60 setting 3.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    '../_base_/datasets/evican60.py',
    '../_base_/schedules/iter_3.5k.py',
    '../_base_/default_runtime.py',
]
model = dict(
    roi_head=dict(
        bbox_head=[dict(head, num_classes=60) for head in _base_.model.roi_head.bbox_head],  # mmdet's 3 stages
        mask_head=dict(num_classes=60)),
    test_cfg=dict(rpn=dict(nms_pre=6000, max_per_img=3000), rcnn=dict(max_per_img=3000)))
