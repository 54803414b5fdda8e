from .ap_table_hook import APTableHook, write_ap_tables
from .checkpoint_fit_hook import CheckpointFitHook
from .dataset_meta_hook import DatasetMetaHook
from .fuse_conv_bn_hook import FuseConvBNHook
from .milestone_checkpoint_hook import MilestoneCheckpointHook
from .rng_state_hook import RNGStateHook, get_rng_states, set_rng_states

__all__ = ['APTableHook', 'CheckpointFitHook', 'DatasetMetaHook', 'FuseConvBNHook', 'MilestoneCheckpointHook', 'RNGStateHook',
           'get_rng_states', 'set_rng_states', 'write_ap_tables']
