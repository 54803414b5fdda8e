from .ap_table_hook import APTableHook, write_ap_tables
from .milestone_checkpoint_hook import MilestoneCheckpointHook
from .partial_load_report_hook import PartialLoadReportHook
from .rng_state_hook import RNGStateHook, get_rng_states, set_rng_states

__all__ = ['APTableHook', 'MilestoneCheckpointHook', 'PartialLoadReportHook', 'RNGStateHook',
           'get_rng_states', 'set_rng_states', 'write_ap_tables']
