"""Small compatibility fixes for mmengine 0.10.7 / mmcv 2.1 on current torch. Imported by deepcis_mm.

Each fix is narrow and names its upstream issue, so it can be dropped when upstream ships the fix.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def load_from_local(filename, map_location):
    """mmengine's local checkpoint loader with ``weights_only=False``.

    torch >= 2.6 defaults ``torch.load(weights_only=True)``, which refuses the message-hub / numpy
    objects mmengine stores in every checkpoint, so ``resume`` and ``load_from`` fail with an
    UnpicklingError (open-mmlab/mmengine#1655). Checkpoints here are the user's own files.
    The function keeps upstream's name: mmengine logs ``__name__[10:]`` as the backend name.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def apply():
    """Install the fixes (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)


apply()
