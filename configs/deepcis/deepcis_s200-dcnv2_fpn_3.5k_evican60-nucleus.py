# Setting 2: nuclei of 30 cultures, 30 classes, with the paper's nucleus anchor sizes.
_base_ = './deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'
subset = 'nucleus'
model = dict(
    rpn_head=dict(anchor_generator=dict(sizes={{_base_.nucleus_anchor_sizes}})),
    roi_head=dict(num_classes=30))
train_dataloader = dict(dataset=dict(subset=subset))
val_dataloader = dict(dataset=dict(subset=subset))
test_dataloader = val_dataloader
