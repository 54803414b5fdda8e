from .culture_consensus import apply_culture_consensus, consensus_labels, culture_consensus
from .known_background_assigner import KnownBackgroundAssigner, unknown_fraction
from .last_stage_mask_cascade_roi_head import LastStageMaskCascadeRoIHead
from .level_mapped_rpn_head import LevelMappedRPNHead
from .pixel_size_anchor_generator import PixelSizeAnchorGenerator, assign_levels
from .resnest_small import ResNeStSmall

__all__ = ['LastStageMaskCascadeRoIHead', 'LevelMappedRPNHead', 'PixelSizeAnchorGenerator', 'assign_levels',
           'ResNeStSmall', 'apply_culture_consensus', 'consensus_labels',
           'culture_consensus', 'KnownBackgroundAssigner', 'unknown_fraction']
