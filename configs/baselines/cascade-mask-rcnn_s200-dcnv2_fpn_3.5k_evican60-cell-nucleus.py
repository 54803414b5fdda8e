# Baseline: stock mmdet Cascade Mask R-CNN (stock anchors and RPN, 2-FC box heads, a mask head at every
# stage) on the DeepCIS backbone and neck. Against configs/deepcis/ it isolates what DeepCIS's heads
# change (scripts/benchmark.py speed, model (b)). Backbone/neck restated from
# configs/_base_/models/deepcis_cascade-mask-rcnn_s200-dcnv2_fpn.py: two bases cannot both set `model`.
_base_ = './cascade-mask-rcnn_r50_fpn_3.5k_evican60-cell-nucleus.py'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=dict(mean=[128.0] * 3, std=[11.578] * 3, bgr_to_rgb=False),
    backbone=dict(
        _delete_=True,
        type='ResNeSt',
        depth=200,
        stem_channels=128,
        radix=2,
        reduction_factor=4,
        avg_down_stride=True,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        dcn=dict(type='DCNv2', deform_groups=2, fallback_on_stride=False),
        stage_with_dcn=(False, True, True, True),
        init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnest200')),
    neck=dict(norm_cfg=norm_cfg))
