#!/usr/bin/env python
"""Evaluate a checkpoint: ``python tools/test.py CONFIG CHECKPOINT [--work-dir D] [--out R.pkl]``.

Thin like mmdet's tools/test.py: bbox/segm metrics per the config's test_evaluator.
"""
import argparse
import os
import os.path as osp

from mmengine.config import DictAction

import deepcis_mm  # noqa: F401
from deepcis_mm.engine import (CheckpointMismatch, build_runner, check_config_checkpoint, check_data_paths,
                               load_config, one_line_errors)


def parse_args():
    p = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    p.add_argument('config', help='test config file path')
    p.add_argument('checkpoint', help='checkpoint file')
    p.add_argument('--work-dir', help='folder for logs and evaluation tables')
    p.add_argument('--out', help='dump predictions to a pickle file (mmdet DumpDetResults)')
    p.add_argument('--show-dir', help='save drawn predictions under work_dir/timestamp/SHOW_DIR')
    p.add_argument('--fuse-conv-bn', action='store_true',
                   help='fold BN into the preceding convs before testing (faster, same detections to float '
                        'tolerance; mmcv fuse_conv_bn)')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override existing config entries; a new key is written +key=value')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    p.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = p.parse_args()
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main():
    args = parse_args()
    with one_line_errors('test', args.config):
        if not osp.isfile(args.checkpoint):
            raise FileNotFoundError(f'checkpoint {args.checkpoint} does not exist')
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.launcher)
        cfg.load_from = args.checkpoint
        if args.show_dir:
            vis = cfg.default_hooks.visualization
            vis.draw, vis.test_out_dir = True, args.show_dir
        if args.out:
            if not args.out.endswith(('.pkl', '.pickle')):
                raise ValueError(f'--out {args.out}: must end with .pkl or .pickle')
            cfg.test_evaluator = list(cfg.test_evaluator) if isinstance(cfg.test_evaluator, list) \
                else [cfg.test_evaluator]
            cfg.test_evaluator.append(dict(type='DumpDetResults', out_file_path=args.out))
        if args.fuse_conv_bn:
            cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [dict(type='FuseConvBNHook')]
        check_data_paths(cfg, ['test'])
        # a checkpoint of another config is an error before anything is written (mmengine would load
        # what fits, warn, and evaluate random heads)
        check_config_checkpoint(cfg, args.checkpoint, args.config)
        runner = build_runner(cfg)
    with one_line_errors('test', args.config, (CheckpointMismatch, )):  # classes in another order
        runner.test()


if __name__ == '__main__':
    main()
