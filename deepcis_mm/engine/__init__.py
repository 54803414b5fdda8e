from .checkpoint_fit import (CheckpointMismatch, check_checkpoint_fits, check_config_checkpoint,
                             init_detector_strict, load_checkpoint_strict, partial_load_summary)
from .config_checks import ConfigKeyError, check_data_paths, split_cfg_options
from .cpu_fallback import apply_cpu_fallback
from .dataset_meta import set_dataset_meta
from .hooks import (APTableHook, CheckpointFitHook, DatasetMetaHook, MilestoneCheckpointHook, RNGStateHook,
                    write_ap_tables)
from .runner_utils import build_runner, load_config, one_line_errors, resolve_resume

__all__ = ['APTableHook', 'CheckpointFitHook', 'CheckpointMismatch', 'ConfigKeyError', 'DatasetMetaHook', 'MilestoneCheckpointHook',
           'RNGStateHook', 'apply_cpu_fallback', 'build_runner', 'check_checkpoint_fits',
           'check_config_checkpoint', 'check_data_paths', 'init_detector_strict', 'load_checkpoint_strict',
           'load_config', 'one_line_errors', 'partial_load_summary', 'resolve_resume', 'set_dataset_meta', 'split_cfg_options',
           'write_ap_tables']
