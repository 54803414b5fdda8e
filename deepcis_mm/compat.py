"""Small compatibility fixes for mmengine 0.10.7 on current torch. Applied when deepcis_mm is imported.

Each fix is narrow and names its cause, so it can be dropped when upstream ships a fix.
"""
import importlib.metadata
import importlib.util
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


def _distribution(package: str):
    try:
        return importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def is_installed(package: str) -> bool:
    """mmengine's ``is_installed`` on ``importlib.metadata``.

    mmengine 0.10.7 imports (and reloads) ``pkg_resources`` here, each time a config names a
    ``mmdet::`` base; setuptools >= 80.9 warns on every such import ("pkg_resources is deprecated as
    an API", three times per command) and setuptools >= 81 drops it. Upstream replaced it the same
    way after 0.10.7 (open-mmlab/mmengine#1676).
    """
    if _distribution(package) is not None:
        return True
    spec = importlib.util.find_spec(package)
    return spec is not None and spec.origin is not None


def get_installed_path(package: str) -> str:
    """mmengine's ``get_installed_path`` on ``importlib.metadata`` (see :func:`is_installed`)."""
    dist = _distribution(package)
    if dist is None:
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise importlib.metadata.PackageNotFoundError(package)
        if spec.origin is None:
            raise RuntimeError(f'{package} is a namespace package, which is invalid for '
                               f'`get_install_path`')
        return osp.dirname(spec.origin)
    location = str(dist.locate_file(''))
    if osp.exists(osp.join(location, package)):
        return osp.join(location, package)
    top_level = (dist.read_text('top_level.txt') or '').split('\n')[0].strip()
    return osp.join(location, top_level or package)


def apply():
    """Install the fixes (idempotent)."""
    import mmengine.config.config as mmengine_config
    import mmengine.hub.hub as mmengine_hub
    import mmengine.utils as mmengine_utils
    import mmengine.utils.package_utils as package_utils

    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    dist_utils._init_dist_pytorch = init_dist_pytorch_cpu_aware
    # every module that bound the pkg_resources-based functions by name
    for module in (package_utils, mmengine_utils, mmengine_config, mmengine_hub):
        for name, fn in (('is_installed', is_installed), ('get_installed_path', get_installed_path)):
            if hasattr(module, name):
                setattr(module, name, fn)


apply()
