"""Adapt a GPU config (SyncBN, nccl, DDP on a device) to a CPU-only machine."""
import torch

SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'NaiveSyncBN')


def _replace_sync_bn(node) -> int:
    count = 0
    if isinstance(node, dict):
        if node.get('type') in SYNC_BN_TYPES:
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _replace_sync_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _replace_sync_bn(value)
    return count


def apply_cpu_fallback(cfg, force: bool = False) -> bool:
    """If CUDA is unavailable (or ``force``): SyncBN -> BN, nccl -> gloo, DDP without device ids.

    Returns True if the config was changed. GPU runs are left exactly as configured.
    """
    if torch.cuda.is_available() and not force:
        return False
    _replace_sync_bn(cfg.model)
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    if cfg.get('launcher', 'none') != 'none':
        wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
        wrapper.setdefault('broadcast_buffers', False)
        wrapper['device_ids'] = None  # CPU modules: DDP must not get device ids
        cfg.model_wrapper_cfg = wrapper
    return True
