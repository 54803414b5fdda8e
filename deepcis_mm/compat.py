"""Small compatibility fixes for mmengine 0.10.7 on current torch. Applied when deepcis_mm is imported.

Each fix is narrow and names its cause, so it can be dropped when upstream ships a fix.
"""
import os.path as osp

import torch
from mmengine.dist import utils as dist_utils
from mmengine.runner.checkpoint import CheckpointLoader

_upstream_init_dist_pytorch = dist_utils._init_dist_pytorch


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


def init_dist_pytorch_cpu_aware(backend, init_backend='torch', **kwargs):
    """mmengine's torchrun set-up calls ``torch.cuda.set_device`` unconditionally, which raises on a
    CPU-only torch; without CUDA go straight to ``init_process_group`` with gloo (CPU DDP runs)."""
    if torch.cuda.is_available() or init_backend != 'torch':
        return _upstream_init_dist_pytorch(backend, init_backend, **kwargs)
    torch.distributed.init_process_group(backend='gloo' if backend == 'nccl' else backend, **kwargs)


def apply():
    """Install the fixes (idempotent)."""
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    dist_utils._init_dist_pytorch = init_dist_pytorch_cpu_aware


apply()
