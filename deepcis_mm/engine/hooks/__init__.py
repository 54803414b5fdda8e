from .ap_table_hook import APTableHook, write_ap_tables
from .milestone_checkpoint_hook import MilestoneCheckpointHook

__all__ = ['APTableHook', 'MilestoneCheckpointHook', 'write_ap_tables']
