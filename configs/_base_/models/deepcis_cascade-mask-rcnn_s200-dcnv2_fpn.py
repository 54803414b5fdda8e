# DeepCIS (Khalid et al.): 3-stage Cascade Mask R-CNN, mask branch at the last stage only,
# ResNeSt-200 (stem 128, radix 2) with DCNv2 in stages 2-4, FPN. Upstream modules composed over
# mmdet's cascade-mask-rcnn base; choices the paper leaves open follow the authors' published
# detectron2 config for the same architecture (LIVECell bt474_config.yaml), see docs/models_and_configs.md.
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py', './deepcis_s200-dcnv2_backbone.py']

norm_cfg = _base_.norm_cfg  # SyncBN; tools/train.py turns it into BN on CPU
anchor_ratios = [0.25, 0.5, 1.0, 2.0, 4.0]
cell_anchor_sizes = [2, 6, 17, 31, 64, 127, 256, 512, 1024]
nucleus_anchor_sizes = [2, 6, 8, 12, 17, 24, 31, 64, 127, 256]
# the target stds of mmdet's three cascade stages (the box heads below replace mmdet's)
cascade_target_stds = [head.bbox_coder.target_stds for head in _base_.model.roi_head.bbox_head]

model = dict(
    # grayscale microscopy (authors' config): mean 128, std 11.578 on each channel
    data_preprocessor=dict(mean=[128.0] * 3, std=[11.578] * 3, bgr_to_rgb=False),
    backbone=dict(_delete_=True, **_base_.deepcis_backbone),
    neck=dict(in_channels=[256, 512, 1024, 2048], norm_cfg=norm_cfg),
    rpn_head=dict(
        type='LevelMappedRPNHead',
        anchor_generator=dict(
            _delete_=True,
            type='PixelSizeAnchorGenerator',
            sizes=cell_anchor_sizes,
            ratios=anchor_ratios,
            fpn_strides=[4, 8, 16, 32, 64],
            mode='per_level')),  # one size per RPN level; 'all_levels' = every size everywhere
    roi_head=dict(
        type='LastStageMaskCascadeRoIHead',
        num_classes=60,
        bbox_roi_extractor=dict(roi_layer=dict(output_size=14)),
        bbox_head=[
            dict(
                type='Shared4Conv1FCBBoxHead',
                in_channels=256,
                conv_out_channels=256,
                fc_out_channels=1024,
                roi_feat_size=14,
                norm_cfg=norm_cfg,
                reg_class_agnostic=True,
                bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.0] * 4, target_stds=stds),
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0))
            for stds in cascade_target_stds
        ],
        mask_head=dict(num_convs=8, norm_cfg=norm_cfg)),
    train_cfg=dict(rpn_proposal=dict(nms_pre=12000, max_per_img=3000)),
    # dense images: keep up to 3000 detections per image. culture_consensus=True relabels each image's
    # detections to its score-weighted majority culture (one culture per EVICAN image; off by default).
    # 300 test proposals, not the authors' 3000 (their *_3000-proposals configs): same AP on the synthetic
    # eval at a third of the CPU time (docs/benchmarks.md, "Test-time proposal count")
    test_cfg=dict(rpn=dict(nms_pre=6000, max_per_img=300),
                  rcnn=dict(max_per_img=3000, culture_consensus=False)))
