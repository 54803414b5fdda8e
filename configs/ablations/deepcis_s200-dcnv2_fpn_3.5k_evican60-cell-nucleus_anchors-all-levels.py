# Anchor ablation: every paper anchor size on every FPN level (the "single size list" reading of the
# paper), instead of the default one size per RPN level.
_base_ = '../deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'
model = dict(rpn_head=dict(anchor_generator=dict(mode='all_levels')))
