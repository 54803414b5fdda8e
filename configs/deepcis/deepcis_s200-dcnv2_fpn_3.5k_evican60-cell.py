# Setting 1: cells of 30 cultures, 30 classes.
_base_ = './deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'
subset = 'cell'
model = dict(roi_head=dict(num_classes=30))
train_dataloader = dict(dataset=dict(subset=subset))
val_dataloader = dict(dataset=dict(subset=subset))
test_dataloader = val_dataloader
