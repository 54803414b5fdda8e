"""ResNeSt with an extra small depth (14) for CPU-scale runs of the same architecture."""
from mmdet.models.backbones import ResNeSt
from mmdet.models.backbones.resnest import Bottleneck
from mmdet.registry import MODELS


@MODELS.register_module()
class ResNeStSmall(ResNeSt):
    """:class:`mmdet.models.ResNeSt` that also accepts depth 14 (1 block per stage: the demo model).

    Same split-attention bottleneck, deep stem, avg-down and DCN options; only the block count differs.
    """
    arch_settings = {**ResNeSt.arch_settings, 14: (Bottleneck, (1, 1, 1, 1))}
