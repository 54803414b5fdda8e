# CPU-scale two-stage model settings (demo data, 2 cores, minutes), stated once for the DeepCIS demo
# model (configs/demo/) and the R18 demo baselines (configs/baselines/*_r18-c16_*): 64-channel FPN and
# heads, 7x7 box RoIs, few proposals and sampled RoIs. mmengine allows one `model` among a config's
# bases, so these are pieces each config merges into its own model (`_base_.cpu_scale.<piece>`).
__channels = 64  # a '__' name stays out of the resolved configs
cpu_scale = dict(
    neck=dict(out_channels=__channels),
    rpn_head=dict(in_channels=__channels, feat_channels=__channels),
    bbox_roi_extractor=dict(roi_layer=dict(output_size=7, sampling_ratio=2), out_channels=__channels),
    bbox_head=dict(in_channels=__channels, roi_feat_size=7, fc_out_channels=256),  # 2-FC heads
    mask_roi_extractor=dict(roi_layer=dict(sampling_ratio=2), out_channels=__channels),
    mask_head=dict(num_convs=2, in_channels=__channels, conv_out_channels=__channels),
    train_cfg=dict(rpn=dict(sampler=dict(num=256)), rpn_proposal=dict(nms_pre=500, max_per_img=300)),
    rcnn_sampler=dict(num=128),  # sampled RoIs per image (per stage in a cascade)
    test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=300), rcnn=dict(max_per_img=200)))
