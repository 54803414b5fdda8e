"""Shared by tools/train.py and tools/test.py: config loading, ``--resume``, the runner, and one-line
errors for bad set-up (the checks themselves: config_checks.py)."""
import contextlib
import os
import os.path as osp
import sys
from typing import Optional

from mmengine.config import Config
from mmengine.utils import import_modules_from_strings
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .config_checks import split_cfg_options
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
        cfg_options = split_cfg_options(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
        if 'custom_imports' in cfg_options or any(k.startswith('custom_imports.') for k in cfg_options):
            # Config.fromfile imported the file's custom_imports before the options were merged
            import_modules_from_strings(**cfg.custom_imports)
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        './work_dirs', osp.splitext(osp.basename(path))[0])
    apply_cpu_fallback(cfg)
    return cfg


# registered on every runner the tools build (unless the config lists them already)
RUNNER_HOOKS = ('CheckpointFitHook', 'RNGStateHook', 'DatasetMetaHook')


def build_runner(cfg: Config) -> Runner:
    """mmengine's Runner (or a custom ``runner_type`` from the config) with the hooks that make
    ``load_from`` report what it re-initialised, resume continue bit-exactly and the model carry its
    data's class table (``model.dataset_meta``)."""
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    present = {type(h).__name__ for h in runner.hooks}
    for name in RUNNER_HOOKS:
        if name not in present:
            runner.register_hook(dict(type=name))
    return runner


def resolve_resume(cfg: Config, resume: Optional[str], tool: str = 'train') -> None:
    """Apply ``--resume`` (``'auto'``: the latest checkpoint of the work_dir; or a path) to ``cfg``.

    No checkpoint in the work_dir is one line on stderr and a fresh start (mmengine would log
    "Auto resumed from the latest checkpoint None"). Without ``randomness.seed`` in the config the
    resumed run takes the checkpoint's seed before anything is seeded, so data order and
    augmentation continue as in the interrupted run.
    """
    from mmengine.runner import find_latest_checkpoint
    if resume is None:
        return
    if resume == 'auto':
        ckpt = find_latest_checkpoint(cfg.work_dir) if osp.isdir(cfg.work_dir) else None
        if ckpt is None:
            print(f'{tool}: --resume: no checkpoint in {cfg.work_dir} (no last_checkpoint file); '
                  f'starting fresh', file=sys.stderr)
            cfg.resume = False
            return
        if not osp.isfile(ckpt):
            raise FileNotFoundError(f'{cfg.work_dir}/last_checkpoint names {ckpt}, which does not exist')
    else:
        ckpt = resume
        if not osp.isfile(ckpt):
            raise FileNotFoundError(f'--resume {ckpt}: checkpoint does not exist')
    cfg.resume, cfg.load_from = True, ckpt
    randomness = cfg.get('randomness') or {}
    if randomness.get('seed') is None:
        import torch
        try:  # mmap: only the meta is read, not the weights
            meta = torch.load(ckpt, map_location='cpu', weights_only=False, mmap=True).get('meta') or {}
        except Exception:  # noqa: BLE001  (legacy format: mmengine's resume reads the seed later)
            meta = {}
        if meta.get('seed') is not None:
            cfg.randomness = dict(randomness, seed=meta['seed'])


@contextlib.contextmanager
def one_line_errors(tool: str, config: str, errors: tuple = SETUP_ERRORS):
    """Turn set-up errors (bad config key, unknown type, missing file) into one line on stderr and
    exit code 2; ``DEEPCIS_DEBUG=1`` shows the traceback instead."""
    try:
        yield
    except errors as e:
        if os.environ.get('DEEPCIS_DEBUG'):
            raise
        lines = str(e).strip().splitlines()
        msg = lines[-1] if lines else ''
        print(f'{tool}: error: {config}: {type(e).__name__}: {msg} (DEEPCIS_DEBUG=1 for a traceback)',
              file=sys.stderr)
        sys.exit(2)
