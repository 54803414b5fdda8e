# Setting 1 (cells, 30 classes) with the image-level culture branch (docs/culture_from_image.md): an ImageCultureHead on
# the FPN levels learns each image's culture (EVICAN60: 30) beside the detector; each box's scores are
# combined with the image posterior before NMS (mode 'product' | 'image' | 'none').
_base_ = './deepcis_s200-dcnv2_fpn_3.5k_evican60-cell.py'
model = dict(
    roi_head=dict(
        type='ImageCultureCascadeRoIHead',
        img_culture_head=dict(type='ImageCultureHead', num_cultures=30, in_channels=256, feat_channels=128,
                              num_levels=5, loss_weight=1.0)),
    test_cfg=dict(rcnn=dict(image_culture=dict(mode='product', weight=1.0))))
