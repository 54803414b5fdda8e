# The paper: SGD lr 0.02, momentum 0.9; checkpoints (and evaluations) at 1,500 / 2,000 / 3,500 iterations.
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=3500, val_begin=1500, val_interval=500,
    # evaluate at 1500 and 2000 (interval 500 from val_begin), then only at 3500: mmengine switches
    # to a dynamic interval when iter + 1 reaches the milestone, hence 2002 (tested in tests/).
    dynamic_intervals=[(2002, 3500)])
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

param_scheduler = [dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500)]
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001))
# lr 0.02 is for 16 images per batch (detectron2/LIVECell convention); `--auto-scale-lr` rescales it
auto_scale_lr = dict(enable=False, base_batch_size=16)
