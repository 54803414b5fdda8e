"""RPN head that reads FPN outputs through the anchor generator's level map."""
from typing import List, Tuple

from mmdet.models.dense_heads import RPNHead
from mmdet.registry import MODELS
from torch import Tensor


@MODELS.register_module()
class LevelMappedRPNHead(RPNHead):
    """:class:`mmdet.models.RPNHead` whose level i is FPN output ``prior_generator.level_map[i]``.

    With :class:`PixelSizeAnchorGenerator` in ``per_level`` mode this gives the detectron2 feature list
    of the authors' config (e.g. ``[p2, p2, p3, p4, p5, p6]``: one anchor size per RPN level). Without a
    ``level_map`` it is a plain RPNHead.

    The head is shared by all levels, so levels reading the same FPN output get the same
    objectness/deltas (only their anchors differ, as in detectron2): each FPN output goes through the
    head once and its outputs are reused (p2 twice and p6 four times for the cell sizes otherwise).
    """

    def forward(self, x: Tuple[Tensor]) -> Tuple[List[Tensor]]:
        level_map = getattr(self.prior_generator, 'level_map', None)
        if level_map is not None:
            if max(level_map) >= len(x):
                raise ValueError(f'LevelMappedRPNHead: level_map {level_map} needs {max(level_map) + 1} '
                                 f'FPN outputs, got {len(x)} (neck.num_outs)')
            outs = {i: self.forward_single(x[i]) for i in sorted(set(level_map))}
            return [outs[i][0] for i in level_map], [outs[i][1] for i in level_map]
        return super().forward(x)
