# The image-level culture branch of the paper-scale configs (docs/culture_from_image.md), stated once:
# an ImageCultureHead on the 5 FPN levels learns each image's culture (EVICAN60: 30) beside the detector
# (its gradient stops at the FPN: the detector trains as the paper's);
# each box's scores are combined with the image posterior before NMS ('product' | 'image' | 'none').
image_culture_roi_head = dict(
    type='ImageCultureCascadeRoIHead',
    img_culture_head=dict(type='ImageCultureHead', num_cultures=30, in_channels=256, feat_channels=128,
                          num_levels=5, loss_weight=1.0, detach_features=True))
image_culture_test_cfg = dict(image_culture=dict(mode='product', weight=1.0))
