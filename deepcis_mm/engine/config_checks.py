"""Checks on a config before the runner is built: ``--cfg-options`` keys must exist, data paths
must exist and evaluators must score the images their data loaders feed."""
import difflib
import json
import os.path as osp
from typing import Iterator, List, Optional, Tuple

from mmengine.config import Config

NEW_KEY_PREFIX = '+'  # --cfg-options +a.b=1 adds a key the config does not have yet
# Runner arguments a config may leave out (mmengine's defaults apply) but --cfg-options may set
RUNNER_OPTIONAL_KEYS = ('randomness.seed', 'randomness.deterministic', 'randomness.diff_rank_seed',
                        'resume', 'load_from', 'work_dir', 'log_level', 'experiment_name', 'auto_scale_lr')


class ConfigKeyError(KeyError):
    """A --cfg-options key that the config does not have."""

    def __str__(self):
        return str(self.args[0]) if self.args else ''


def _dotted_keys(node, prefix: str = '') -> Iterator[str]:
    """Every key path of a config (dicts by name, lists by index), parents before children."""
    items = node.items() if isinstance(node, dict) else \
        enumerate(node) if isinstance(node, (list, tuple)) else ()
    for k, v in items:
        path = f'{prefix}{k}'
        yield path
        yield from _dotted_keys(v, path + '.')


def _lookup(cfg, key: str) -> Tuple[bool, str]:
    """(whether ``key`` exists in ``cfg``, the longest prefix of it that does)."""
    node, found = cfg, []
    for part in key.split('.'):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, (list, tuple)) and part.lstrip('-').isdigit() and \
                -len(node) <= int(part) < len(node):
            node = node[int(part)]
        else:
            return False, '.'.join(found)
        found.append(part)
    return True, key


def split_cfg_options(cfg, options: dict) -> dict:
    """Check every ``--cfg-options`` key against ``cfg`` and return the options to merge.

    An existing key (``train_cfg.max_iters``, list items by index: ``custom_hooks.1.type``) is merged
    as usual; a key the config does not have is an error naming the closest existing key
    (``train_cfg.max_iter`` -> ``train_cfg.max_iters``), since mmengine would silently add it.
    A genuinely new key is written with a leading ``+`` (``+model.test_cfg.rcnn.new_option=1``).
    """
    tree = cfg.to_dict() if isinstance(cfg, Config) else cfg
    merged = {}
    for key, value in options.items():
        if key.startswith(NEW_KEY_PREFIX):
            merged[key[len(NEW_KEY_PREFIX):]] = value
            continue
        exists, known = _lookup(tree, key)
        if not exists and key not in RUNNER_OPTIONAL_KEYS:
            candidates = [k for k in list(_dotted_keys(tree)) + list(RUNNER_OPTIONAL_KEYS)
                          if k.count('.') == key.count('.')]
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
            hint = f'did you mean {close[0]}? ' if close else \
                (f'{known} exists, ' if known else '')
            raise ConfigKeyError(f'--cfg-options {key}: no such key in the config ({hint}'
                                 f'a new key is written +{key}=...)')
        merged[key] = value
    return merged


def _dataset_paths(ds, where: str) -> Iterator[Tuple[str, str, bool]]:
    """(config location, path, is a folder) of a dataset's annotation file and image folder;
    dataset wrappers (ConcatDataset, RepeatDataset, ...) are followed."""
    if not isinstance(ds, dict):
        return
    if 'datasets' in ds:
        for i, sub in enumerate(ds['datasets']):
            yield from _dataset_paths(sub, f'{where}.datasets.{i}')
        return
    if 'dataset' in ds:
        yield from _dataset_paths(ds['dataset'], f'{where}.dataset')
        return
    root = ds.get('data_root') or ''
    if root and not osp.isdir(root):
        yield f'{where}.data_root', root, True
        return
    ann = ds.get('ann_file')
    if ann:
        yield f'{where}.ann_file', ann if osp.isabs(ann) or not root else osp.join(root, ann), False
    img = (ds.get('data_prefix') or {}).get('img')
    if img is not None:
        yield f'{where}.data_prefix.img', img if osp.isabs(img) or not root else osp.join(root, img), True


# metrics that cannot score without their own annotation file
NEEDS_ANN_FILE = ('DifficultyCocoMetric', )


def _evaluator_ann_files(evaluator, where: str) -> Iterator[Tuple[str, str]]:
    items = enumerate(evaluator) if isinstance(evaluator, (list, tuple)) else [(None, evaluator)]
    for i, ev in items:
        key = (where if i is None else f'{where}.{i}') + '.ann_file'
        if isinstance(ev, dict) and ev.get('ann_file'):
            yield key, ev['ann_file']
        elif isinstance(ev, dict) and str(ev.get('type', '')).split('.')[-1] in NEEDS_ANN_FILE:
            raise ValueError(f'{key}: not set ({ev["type"]} needs the annotation file of the images '
                             f'it scores)')


def _image_names(ann_file: str) -> Optional[set]:
    try:
        with open(ann_file) as f:
            return {(im.get('id'), im.get('file_name')) for im in json.load(f).get('images', [])}
    except (OSError, ValueError, AttributeError):
        return None  # the dataset or metric reports an unreadable file itself


def check_data_paths(cfg, splits: List[str]) -> None:
    """Before the runner is built: every annotation file and image folder the ``splits``
    ('train', 'val', 'test') use must exist, and each evaluator must score the images its data
    loader feeds (its ann_file describes the same images). Raises FileNotFoundError / ValueError."""
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not isinstance(loader, dict):
            continue
        ds_ann = None
        for where, path, is_dir in _dataset_paths(loader.get('dataset'), f'{split}_dataloader.dataset'):
            if '://' in str(path):  # a storage backend (backend_args): mmengine reads it
                continue
            if not (osp.isdir(path) if is_dir else osp.isfile(path)):
                kind = 'folder' if is_dir else 'file'
                raise FileNotFoundError(f'{where}: {kind} {path} does not exist')
            if where.endswith('.ann_file') and ds_ann is None:
                ds_ann = path
        if split == 'train':
            continue
        for where, ann in _evaluator_ann_files(cfg.get(f'{split}_evaluator'), f'{split}_evaluator'):
            if '://' in str(ann):
                continue
            if not osp.isfile(ann):
                raise FileNotFoundError(f'{where}: file {ann} does not exist')
            if ds_ann and osp.realpath(ann) != osp.realpath(ds_ann):
                a, b = _image_names(ann), _image_names(ds_ann)
                if a is not None and b is not None and a != b:
                    raise ValueError(f'{where}: {ann} does not list the images of {split}_dataloader\'s '
                                     f'{ds_ann} ({len(a ^ b)} differ); set {where}={ds_ann}')
