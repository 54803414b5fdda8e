# Setting 1 (cells, 30 classes) with the image-level culture branch (docs/culture_from_image.md).
_base_ = ['./deepcis_s200-dcnv2_fpn_3.5k_evican60-cell.py', '../_base_/models/image_culture_branch.py']
model = dict(roi_head=_base_.image_culture_roi_head, test_cfg=dict(rcnn=_base_.image_culture_test_cfg))
