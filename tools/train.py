#!/usr/bin/env python
"""Train a config: ``python tools/train.py CONFIG [--resume [CKPT]] [--cfg-options k=v ...]``.

Thin like mmdet's tools/train.py; on a CPU-only machine SyncBN/nccl become BN/gloo.
"""
import argparse
import os

from mmengine.config import DictAction

import deepcis_mm  # noqa: F401  (registers modules, applies compat fixes)
from deepcis_mm.engine import (CheckpointMismatch, build_runner, check_data_paths, load_config,
                               one_line_errors, resolve_resume)


def parse_args():
    p = argparse.ArgumentParser(description='Train a detector')
    p.add_argument('config', help='train config file path')
    p.add_argument('--work-dir', help='folder for logs and checkpoints')
    p.add_argument('--amp', action='store_true', help='automatic mixed precision')
    p.add_argument('--auto-scale-lr', action='store_true', help='scale lr by total batch / base batch')
    p.add_argument('--resume', nargs='?', type=str, const='auto',
                   help='resume from CHECKPOINT, or from the latest one in work_dir if none is given')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override existing config entries, e.g. model.roi_head.num_classes=8; '
                        'a key the config does not have is an error unless written +key=value')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    with one_line_errors('train', args.config):
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        if args.amp:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
        if args.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        resolve_resume(cfg, args.resume)
        check_data_paths(cfg, ['train', 'val'] if cfg.get('val_cfg') else ['train'])
        runner = build_runner(cfg)
    with one_line_errors('train', args.config, (CheckpointMismatch, )):  # a resume checkpoint that does not fit
        runner.train()


if __name__ == '__main__':
    main()
