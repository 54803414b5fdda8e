# DeepCIS backbone: ResNeSt-200 (stem 128, radix 2, reduction 4, avg-down) with DCNv2 (2 deformable
# groups) in stages 2-4, nothing frozen (authors' FREEZE_AT 0). One place for it: the DeepCIS model
# and the stock cascade baseline on the same backbone both take `_base_.deepcis_backbone`.
norm_cfg = dict(type='SyncBN', requires_grad=True)  # tools/train.py turns it into BN on CPU
deepcis_backbone = dict(
    type='ResNeSt',
    depth=200,
    stem_channels=128,
    radix=2,
    reduction_factor=4,
    avg_down_stride=True,
    num_stages=4,
    out_indices=(0, 1, 2, 3),
    frozen_stages=-1,
    norm_cfg=norm_cfg,
    norm_eval=False,
    style='pytorch',
    dcn=dict(type='DCNv2', deform_groups=2, fallback_on_stride=False),
    stage_with_dcn=(False, True, True, True),
    init_cfg=dict(type='Pretrained', checkpoint='open-mmlab://resnest200'))
