from .cpu_fallback import apply_cpu_fallback
from .hooks import APTableHook, MilestoneCheckpointHook, write_ap_tables
from .runner_utils import build_runner, load_config, one_line_errors

__all__ = ['APTableHook', 'MilestoneCheckpointHook', 'apply_cpu_fallback', 'build_runner', 'load_config',
           'one_line_errors', 'write_ap_tables']
