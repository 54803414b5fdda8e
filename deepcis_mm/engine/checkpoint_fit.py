"""Does a checkpoint fit a model? Strict for test and inference, a summary for ``load_from``.

mmengine loads checkpoints with ``strict=False``: a checkpoint of another class count gives "size
mismatch" warnings and a model with random heads that still evaluates (Table I of zeros, exit 0).
Test and inference use :func:`check_checkpoint_fits` / :func:`init_detector_strict` instead; training
with ``load_from`` keeps partial loading (COCO initialisation) and reports it in one line
(:func:`partial_load_summary`).
"""
import re
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.runner.checkpoint import _load_checkpoint

from .dataset_meta import set_dataset_meta

# classifier layers whose first dimension is the class count (+1 background for box classifiers)
_CLASS_LAYERS = ((re.compile(r'fc_cls\.(weight|bias)$'), 1), (re.compile(r'conv_logits\.(weight|bias)$'), 0),
                 (re.compile(r'conv_cls\.(weight|bias)$'), 0))


class CheckpointMismatch(ValueError):
    """A checkpoint that does not fit the model built from a config; the message names both."""


def checkpoint_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The weights of a loaded checkpoint, with DDP's ``module.`` prefix removed (as mmengine does)."""
    sd = checkpoint.get('state_dict', checkpoint) if isinstance(checkpoint, dict) else checkpoint
    return {re.sub(r'^module\.', '', k): v for k, v in sd.items()}


def compare_state_dicts(model_sd: Dict[str, torch.Tensor], ckpt_sd: Dict[str, torch.Tensor]
                        ) -> Tuple[List[Tuple[str, tuple, tuple]], List[str], List[str]]:
    """(shape mismatches as (key, checkpoint shape, model shape), keys missing from the checkpoint,
    keys the model does not have), each in the model's / checkpoint's key order."""
    shapes = [(k, tuple(ckpt_sd[k].shape), tuple(v.shape)) for k, v in model_sd.items()
              if k in ckpt_sd and hasattr(ckpt_sd[k], 'shape') and tuple(ckpt_sd[k].shape) != tuple(v.shape)]
    missing = [k for k in model_sd if k not in ckpt_sd]
    unexpected = [k for k in ckpt_sd if k not in model_sd]
    return shapes, missing, unexpected


def _classes_hint(key: str, ckpt_shape: tuple, model_shape: tuple) -> str:
    for pattern, extra in _CLASS_LAYERS:
        if pattern.search(key) and ckpt_shape and model_shape:
            return f' ({ckpt_shape[0] - extra} vs {model_shape[0] - extra} classes)'
    return ''


def describe_mismatch(shapes, missing, unexpected) -> Optional[str]:
    """The first difference in words, with how many more there are; None if the weights fit."""
    total = len(shapes) + len(missing) + len(unexpected)
    if not total:
        return None
    if shapes:
        key, cs, ms = shapes[0]
        first = (f'{key} is {list(cs)} in the checkpoint but {list(ms)} in the model'
                 f'{_classes_hint(key, cs, ms)}')
    elif missing:
        first = f'the checkpoint has no {missing[0]}'
    else:
        first = f'the model has no {unexpected[0]}'
    more = f'; {total - 1} more tensor(s) differ' if total > 1 else ''
    return first + more


def check_checkpoint_fits(model: torch.nn.Module, checkpoint: dict, checkpoint_path: str,
                          config_path: str) -> None:
    """Raise :class:`CheckpointMismatch` naming both files and the first mismatching tensor."""
    what = describe_mismatch(*compare_state_dicts(model.state_dict(), checkpoint_state_dict(checkpoint)))
    if what:
        raise CheckpointMismatch(f'checkpoint {checkpoint_path} does not fit config {config_path}: {what}')


def load_checkpoint_strict(model: torch.nn.Module, checkpoint_path: str, config_path: str) -> dict:
    """Load ``checkpoint_path`` into ``model`` only if every tensor fits; return the checkpoint."""
    checkpoint = _load_checkpoint(checkpoint_path, map_location='cpu')
    check_checkpoint_fits(model, checkpoint, checkpoint_path, config_path)
    model.load_state_dict(checkpoint_state_dict(checkpoint), strict=True)
    return checkpoint


def build_model_from_cfg(cfg) -> torch.nn.Module:
    """The config's model, built in the config's default scope (weights not initialised)."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    return MODELS.build(cfg.model)


def check_config_checkpoint(cfg, checkpoint_path: str, config_path: str) -> None:
    """Build the config's model and check that ``checkpoint_path`` fits it (tools/test.py runs this
    before the runner exists, so a mismatch writes nothing)."""
    model = build_model_from_cfg(cfg)
    checkpoint = _load_checkpoint(checkpoint_path, map_location='cpu')
    check_checkpoint_fits(model, checkpoint, checkpoint_path, config_path)


def init_detector_strict(cfg, checkpoint_path: str, config_path: str, device: str = 'cpu'
                         ) -> Tuple[torch.nn.Module, dict]:
    """mmdet's ``init_detector`` with a strict checkpoint: (model in eval mode on ``device``, checkpoint).

    Unlike ``init_detector(cfg, None)`` + a separate load, nothing falls back to COCO class names
    (the "checkpoint is None, use COCO classes by default" warning): the classes come from the
    checkpoint's ``meta.dataset_meta``.
    """
    from mmengine.model.utils import revert_sync_batchnorm
    model = revert_sync_batchnorm(build_model_from_cfg(cfg))
    checkpoint = load_checkpoint_strict(model, checkpoint_path, config_path)
    set_dataset_meta(model, (checkpoint.get('meta') or {}).get('dataset_meta') or {})
    model.cfg = cfg  # mmdet's inference_detector reads the test pipeline from here
    return model.to(device).eval(), checkpoint


def partial_load_summary(model: torch.nn.Module, checkpoint: dict, source: str) -> Optional[str]:
    """For ``load_from`` in training: make ``checkpoint`` fit ``model`` by keeping the model's own
    (freshly initialised) tensors where shapes differ or the checkpoint lacks them and dropping what
    the model does not have; return one line saying which modules were re-initialised (None if all fit).
    """
    sd = checkpoint_state_dict(checkpoint)
    model_sd = model.state_dict()
    shapes, missing, unexpected = compare_state_dicts(model_sd, sd)
    if not (shapes or missing or unexpected):
        return None
    for key, _, _ in shapes:
        sd[key] = model_sd[key]
    for key in missing:
        sd[key] = model_sd[key]
    for key in unexpected:
        del sd[key]
    checkpoint['state_dict'] = sd
    modules = []
    for key in [k for k, _, _ in shapes] + missing:
        mod = key.rsplit('.', 1)[0]
        if mod not in modules:
            modules.append(mod)
    hint = next((_classes_hint(k, cs, ms) for k, cs, ms in shapes if _classes_hint(k, cs, ms)), '')
    shown = ', '.join(modules[:8]) + (f' (+{len(modules) - 8} more)' if len(modules) > 8 else '')
    parts = [f'load_from {source}: re-initialised {len(modules)} module(s){hint}: {shown}' if modules
             else f'load_from {source}: all model tensors loaded']
    if unexpected:
        parts.append(f'{len(unexpected)} checkpoint tensor(s) unused (e.g. {unexpected[0]})')
    return '; '.join(parts)
