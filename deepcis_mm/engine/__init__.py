from .cpu_fallback import apply_cpu_fallback
from .hooks import *  # noqa: F401,F403
from .runner_utils import build_runner, load_config, one_line_errors

__all__ = ['apply_cpu_fallback', 'build_runner', 'load_config', 'one_line_errors']
