# Baseline: stock mmdet Cascade Mask R-CNN (stock anchors and RPN, 2-FC box heads, a mask head at every
# stage) on the DeepCIS backbone and neck. Against configs/deepcis/ it isolates what DeepCIS's heads
# change (scripts/analysis_tools/benchmark.py speed, model (b)).
_base_ = ['./cascade-mask-rcnn_r50_fpn_3.5k_evican60-cell-nucleus.py',
          '../_base_/models/deepcis_s200-dcnv2_backbone.py']

model = dict(
    data_preprocessor=dict(mean=[128.0] * 3, std=[11.578] * 3, bgr_to_rgb=False),
    backbone=dict(_delete_=True, **_base_.deepcis_backbone),
    neck=dict(norm_cfg=_base_.norm_cfg))
