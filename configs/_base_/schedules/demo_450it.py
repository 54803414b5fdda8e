# CPU demo schedule: 450 iterations of 2 images, one evaluation and checkpoint at the end.
# Inherits the runtime so that it can replace the paper's milestone checkpoints.
_base_ = '../default_runtime.py'

max_iters = 450
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(0.8 * max_iters)]),
]
optim_wrapper = dict(
    type='OptimWrapper', optimizer=dict(type='SGD', lr=0.02, momentum=0.9, weight_decay=0.0001),
    clip_grad=dict(max_norm=10, norm_type=2))
auto_scale_lr = dict(enable=False, base_batch_size=16)
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(milestones=None, interval=max_iters, max_keep_ckpts=2))
# fixed seed: reruns of `make demo` differ only by non-deterministic CPU kernels
randomness = dict(seed=0)
