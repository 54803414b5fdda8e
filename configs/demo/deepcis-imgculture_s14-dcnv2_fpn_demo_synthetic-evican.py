# The CPU demo model with an image-level culture branch (docs/culture_from_image.md): an
# ImageCultureHead on the FPN levels learns each image's culture beside the detector; at test time
# each box's (culture, kind) scores are combined with the image posterior before NMS.
_base_ = './deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'

model = dict(
    roi_head=dict(
        type='ImageCultureCascadeRoIHead',
        img_culture_head=dict(type='ImageCultureHead', num_cultures={{_base_.num_cultures}},
                              in_channels={{_base_.model.neck.out_channels}}, feat_channels=64,
                              num_levels=5, loss_weight=1.0, detach_features=True)),
    # 'product': p_inst(c|kind) x pi(c)^(weight x confidence); 'image': kind x image culture where
    # the image branch is sure, per-instance culture where it is not; 'none': the paper's scores
    test_cfg=dict(rcnn=dict(image_culture=dict(mode='product', weight=1.0))))
