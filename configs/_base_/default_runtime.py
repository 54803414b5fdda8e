_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['deepcis_mm'], allow_failed_imports=False)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    # the paper's checkpoints: 1,500 / 2,000 / 3,500 iterations (+ the last one)
    checkpoint=dict(type='MilestoneCheckpointHook', milestones=[1500, 2000, 3500], save_last=True,
                    max_keep_ckpts=-1))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
custom_hooks = [
    # fails early and clearly when the dataset's classes and the heads' num_classes disagree
    dict(type='NumClassCheckHook'),
    # Table I / per-class AP files under <work_dir>/ap_tables/ after every evaluation
    dict(type='APTableHook'),
]
