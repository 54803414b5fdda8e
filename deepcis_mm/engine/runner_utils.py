"""Shared by tools/train.py and tools/test.py: config loading and one-line errors for bad set-up."""
import contextlib
import os
import os.path as osp
import sys
from typing import Optional

from mmengine.config import Config
from mmengine.utils import import_modules_from_strings
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .cpu_fallback import apply_cpu_fallback

SETUP_ERRORS = (FileNotFoundError, KeyError, TypeError, ValueError, AttributeError, ImportError)


def load_config(path: str, cfg_options: Optional[dict] = None, work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Read a config, apply ``--cfg-options``, default the work_dir, adapt to CPU if no GPU."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        if 'custom_imports' in cfg_options or any(k.startswith('custom_imports.') for k in cfg_options):
            # Config.fromfile imported the file's custom_imports before the options were merged
            import_modules_from_strings(**cfg.custom_imports)
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(path))[0])
    apply_cpu_fallback(cfg)
    return cfg


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner, or a custom ``runner_type`` from the config."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


@contextlib.contextmanager
def one_line_errors(tool: str, config: str):
    """Turn set-up errors (bad config key, unknown type, missing file) into one line on stderr and
    exit code 2; ``DEEPCIS_DEBUG=1`` shows the traceback instead."""
    try:
        yield
    except SETUP_ERRORS as e:
        if os.environ.get('DEEPCIS_DEBUG'):
            raise
        lines = str(e).strip().splitlines()
        msg = lines[-1] if lines else ''
        print(f'{tool}: error: {config}: {type(e).__name__}: {msg} (DEEPCIS_DEBUG=1 for a traceback)',
              file=sys.stderr)
        sys.exit(2)
