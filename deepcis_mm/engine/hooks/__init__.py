from .milestone_checkpoint_hook import MilestoneCheckpointHook

__all__ = ['MilestoneCheckpointHook']
