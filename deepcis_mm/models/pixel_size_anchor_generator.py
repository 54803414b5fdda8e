"""Anchors given as explicit pixel sizes, as in the DeepCIS paper (e.g. cells 2, 6, 17, ..., 1024)."""
import math
from typing import List, Optional, Sequence

from mmdet.models.task_modules.prior_generators import AnchorGenerator
from mmdet.registry import TASK_UTILS

MODES = ('per_level', 'all_levels')


def assign_levels(sizes: Sequence[float], fpn_strides: Sequence[int], size_per_stride: float = 2.0) -> List[int]:
    """Map each anchor size to the FPN level whose stride is closest (log scale) to size / 2.

    This reproduces the authors' published detectron2 map (LIVECell ``bt474_config.yaml``: sizes 4, 9,
    17, 31, 64, 127 on p2, p2, p3, p4, p5, p6); sizes beyond the ends go to the first/last level.
    """
    logs = [math.log2(s) for s in fpn_strides]
    return [min(range(len(fpn_strides)), key=lambda i: (abs(math.log2(size / size_per_stride) - logs[i]), i))
            for size in sizes]


@TASK_UTILS.register_module()
class PixelSizeAnchorGenerator(AnchorGenerator):
    """Anchors of explicit pixel sizes (square-root of the anchor area) and ratios h/w.

    Args:
        sizes: anchor sizes in pixels, e.g. ``(2, 6, 17, 31, 64, 127, 256, 512, 1024)``.
        ratios: aspect ratios h/w, e.g. ``(0.25, 0.5, 1, 2, 4)``.
        fpn_strides: strides of the FPN outputs the RPN sees (p2..p6 by default).
        mode: ``'per_level'`` (default, the authors' detectron2 meaning): one size per RPN level; RPN
            level i reads FPN output ``level_map[i]``, so a finest map is repeated for extra small sizes.
            ``'all_levels'`` (ablation): every size on every FPN level.
        level_map: FPN output index per size (``per_level`` only); default :func:`assign_levels`.

    ``self.level_map`` tells the RPN head (:class:`LevelMappedRPNHead`) which FPN output feeds each
    anchor level.
    """

    def __init__(self, sizes: Sequence[float], ratios: Sequence[float],
                 fpn_strides: Sequence[int] = (4, 8, 16, 32, 64), mode: str = 'per_level',
                 level_map: Optional[Sequence[int]] = None, center_offset: float = 0.0, **kwargs):
        if mode not in MODES:
            raise ValueError(f'PixelSizeAnchorGenerator: mode must be one of {MODES}, got {mode!r}')
        if not sizes or any(s <= 0 for s in sizes):
            raise ValueError(f'PixelSizeAnchorGenerator: sizes must be positive, got {list(sizes)}')
        self.sizes, self.mode, self.fpn_strides = list(sizes), mode, list(fpn_strides)
        if mode == 'per_level':
            level_map = list(level_map) if level_map is not None else assign_levels(sizes, fpn_strides)
            if len(level_map) != len(sizes) or not all(0 <= i < len(fpn_strides) for i in level_map):
                raise ValueError(f'PixelSizeAnchorGenerator: level_map {level_map} must give one FPN '
                                 f'level in [0, {len(fpn_strides)}) per size ({len(sizes)} sizes)')
            strides = [fpn_strides[i] for i in level_map]
            base_sizes, scales = list(sizes), [1.0]
        else:
            if level_map is not None:
                raise ValueError('PixelSizeAnchorGenerator: level_map is only for mode="per_level"')
            level_map = list(range(len(fpn_strides)))
            strides = list(fpn_strides)
            # base size 1 x scale s = an anchor of s pixels, every size on every level
            base_sizes, scales = [1.0] * len(fpn_strides), list(sizes)
        self.level_map = level_map
        super().__init__(strides=strides, ratios=list(ratios), scales=scales, base_sizes=base_sizes,
                         center_offset=center_offset, **kwargs)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(sizes={self.sizes}, ratios={self.ratios.tolist()}, '
                f'mode={self.mode!r}, level_map={self.level_map}, strides={self.strides})')
