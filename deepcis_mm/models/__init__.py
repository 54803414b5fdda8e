from .culture_combination import combine_class_probs, image_confidence
from .culture_consensus import apply_culture_consensus, consensus_labels, culture_consensus
from .image_culture_head import ImageCultureHead, image_culture_targets
from .image_culture_roi_head import ImageCultureCascadeRoIHead
from .known_background_assigner import KnownBackgroundAssigner, unknown_fraction
from .last_stage_mask_cascade_roi_head import LastStageMaskCascadeRoIHead
from .level_mapped_rpn_head import LevelMappedRPNHead
from .pixel_size_anchor_generator import PixelSizeAnchorGenerator, assign_levels
from .resnest_small import ResNeStSmall

__all__ = ['ImageCultureCascadeRoIHead', 'ImageCultureHead', 'KnownBackgroundAssigner',
           'LastStageMaskCascadeRoIHead', 'LevelMappedRPNHead', 'PixelSizeAnchorGenerator', 'assign_levels',
           'ResNeStSmall', 'apply_culture_consensus', 'combine_class_probs', 'consensus_labels',
           'culture_consensus', 'image_confidence', 'image_culture_targets', 'unknown_fraction']
