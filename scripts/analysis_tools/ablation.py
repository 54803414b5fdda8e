#!/usr/bin/env python
"""Ablation in one command: a base config and named variants (``--cfg-options`` strings), each trained
into its own work_dir and tested, then one comparison table (``deepcis compare``) across them.

    python scripts/analysis_tools/ablation.py CONFIG \\
        --variant paper= \\
        --variant all-levels='model.rpn_head.anchor_generator.mode=all_levels' \\
        --variant small='model.rpn_head.anchor_generator.sizes=[4,8,16,32,64]' \\
        [--common 'train_cfg.max_iters=200 ...'] [--work-dir work_dirs/ablation/NAME]

On one machine the variants run one after another (tools/train.py, then tools/test.py on the last
checkpoint, each with its log in the variant's work_dir). A variant whose work_dir already holds test
tables is kept as it is (delete the folder to retrain it); one with checkpoints but no tables is
resumed (``--resume``). ``--print-only`` prints the commands instead; with ``--launcher pytorch`` they
are ``tools/dist_train.sh``/``dist_test.sh`` commands (``--gpus N``), with ``--launcher slurm``
``tools/slurm_train.sh`` commands (``--partition P``) and the test through ``srun``, for a cluster.
"""
import argparse
import os
import os.path as osp
import re
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')


class AblationError(RuntimeError):
    """A one-line reason the ablation stops."""


def parse_variant(spec: str) -> Tuple[str, List[str]]:
    """``NAME=OPTIONS`` -> (name, [key=value, ...]); OPTIONS may be empty (the base config)."""
    name, sep, options = spec.partition('=')
    if not sep or not NAME_RE.match(name):
        raise AblationError(f'--variant {spec!r}: expected NAME=OPTIONS with NAME of letters, digits, . _ - '
                            "(e.g. all-levels='model.rpn_head.anchor_generator.mode=all_levels')")
    opts = shlex.split(options)
    bad = [o for o in opts if '=' not in o]
    if bad:
        raise AblationError(f'--variant {name}: {bad[0]!r} is not a key=value option')
    return name, opts


def parse_variants(specs: Sequence[str]) -> Dict[str, List[str]]:
    variants: Dict[str, List[str]] = {}
    for spec in specs:
        name, opts = parse_variant(spec)
        if name in variants:
            raise AblationError(f'--variant {name}: given twice')
        variants[name] = opts
    if not variants:
        raise AblationError('no --variant given (use --variant base= for the unchanged config)')
    return variants


def _q(args: Sequence[str]) -> str:
    return ' '.join(shlex.quote(a) for a in args)


def _cfg(opts: Sequence[str]) -> List[str]:
    return ['--cfg-options', *opts] if opts else []


def cluster_commands(config: str, variants: Dict[str, List[str]], common: List[str], work_root: str,
                     launcher: str, gpus: int, partition: Optional[str], compare_out: str) -> List[str]:
    """Shell commands that train and test every variant with the given launcher, then compare."""
    lines = []
    for name, opts in variants.items():
        wd = osp.join(work_root, name)
        o = _cfg(common + opts)
        ckpt = f'"$(cat {shlex.quote(wd)}/last_checkpoint)"'
        if launcher == 'pytorch':
            lines.append(_q(['bash', 'tools/dist_train.sh', config, str(gpus), '--work-dir', wd, *o]))
            lines.append(f'bash tools/dist_test.sh {shlex.quote(config)} {ckpt} {gpus} '
                         f'--work-dir {shlex.quote(wd)} {_q(o)}'.rstrip())
        elif launcher == 'slurm':
            part = partition or 'PARTITION'
            lines.append(f'GPUS={gpus} ' + _q(['bash', 'tools/slurm_train.sh', part, f'ablation-{name}', config, wd,
                                               *o]))
            lines.append(f'srun -p {shlex.quote(part)} --job-name=test-{name} --gres=gpu:1 --ntasks=1 '
                         f'python -u tools/test.py {shlex.quote(config)} {ckpt} --work-dir {shlex.quote(wd)} '
                         f'--launcher slurm {_q(o)}'.rstrip())
        else:
            lines.append(_q([sys.executable, 'tools/train.py', config, '--work-dir', wd, *o]))
            lines.append(f'{shlex.quote(sys.executable)} tools/test.py {shlex.quote(config)} {ckpt} '
                         f'--work-dir {shlex.quote(wd)} {_q(o)}'.rstrip())
    lines.append(_q(['deepcis', 'compare', *[osp.join(work_root, n) for n in variants], '--per-class',
                     '--out', compare_out]))
    return lines


def _from_root(path: str) -> str:
    path = osp.abspath(path)
    return osp.relpath(path, ROOT) if path.startswith(ROOT + os.sep) else path


def _has_test_tables(wd: str) -> bool:
    ap = osp.join(wd, 'ap_tables')
    return osp.isdir(ap) and any(d.startswith('test_') and osp.isfile(osp.join(ap, d, 'metrics.json'))
                                 for d in os.listdir(ap))


def _run(cmd: List[str], log_file: str, what: str) -> None:
    with open(log_file, 'w') as f:
        f.write('$ ' + _q(cmd) + '\n')
        f.flush()
        rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if rc != 0:
        tail = ''
        with open(log_file) as f:
            errs = [ln.strip() for ln in f if ': error: ' in ln or 'Error' in ln]
        if errs:
            tail = f': {errs[-1][:300]}'
        raise AblationError(f'{what} failed (exit {rc}), see {log_file}{tail}')


def run_variant(config: str, name: str, opts: List[str], work_dir: str, log=print) -> str:
    """Train (or resume) and test one variant in ``work_dir``; return its state ('kept' or 'trained')."""
    if _has_test_tables(work_dir):
        log(f'[{name}] {work_dir} already has test tables: kept (delete it to retrain)')
        return 'kept'
    os.makedirs(work_dir, exist_ok=True)
    train = [sys.executable, 'tools/train.py', config, '--work-dir', work_dir, *_cfg(opts)]
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        train.append('--resume')  # an interrupted run continues from its last checkpoint
        log(f'[{name}] resuming in {work_dir}')
    t0 = time.time()
    log(f'[{name}] training: {_q(train)}')
    _run(train, osp.join(work_dir, 'ablation_train.log'), f'[{name}] training')
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        ckpt = f.read().strip()
    log(f'[{name}] trained in {time.time() - t0:.0f} s -> {ckpt}; testing')
    test = [sys.executable, 'tools/test.py', config, ckpt, '--work-dir', work_dir, *_cfg(opts)]
    _run(test, osp.join(work_dir, 'ablation_test.log'), f'[{name}] testing')
    return 'trained'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='base config')
    p.add_argument('--variant', action='append', default=[], metavar='NAME=OPTIONS',
                   help="a named variant: space-separated --cfg-options (quote it); 'base=' for the config as is")
    p.add_argument('--common', default='', metavar='OPTIONS',
                   help='--cfg-options applied to every variant (e.g. a shorter schedule), before its own')
    p.add_argument('--work-dir', help='root of the variants\' work_dirs (default work_dirs/ablation/<config name>)')
    p.add_argument('--compare-out', help='comparison output folder (default <work-dir>/compare)')
    p.add_argument('--print-only', action='store_true', help='print the commands, run nothing')
    p.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                   help='with --print-only: dist_train.sh (pytorch) or slurm_train.sh (slurm) commands')
    p.add_argument('--gpus', type=int, default=8, help='GPUs per variant for --launcher pytorch/slurm')
    p.add_argument('--partition', help='slurm partition for --launcher slurm')
    args = p.parse_args(argv)
    prog = 'ablation.py'
    try:
        if not osp.isfile(args.config):
            raise AblationError(f'{args.config}: config not found')
        if args.launcher != 'none' and not args.print_only:
            raise AblationError(f'--launcher {args.launcher} prints cluster commands: add --print-only '
                                '(this script trains sequentially on this machine only)')
        variants = parse_variants(args.variant)
        _, common = parse_variant('common=' + args.common)
        work_root = args.work_dir or osp.join('work_dirs', 'ablation', osp.splitext(osp.basename(args.config))[0])
        compare_out = args.compare_out or osp.join(work_root, 'compare')
        # commands run from the repository root: paths inside it relative to it, others absolute
        config, work_root, compare_out = (_from_root(x) for x in (args.config, work_root, compare_out))
        if args.print_only:
            print('\n'.join(cluster_commands(config, variants, common, work_root, args.launcher, args.gpus,
                                             args.partition, compare_out)))
            return 0
        t0 = time.time()
        for name, opts in variants.items():
            run_variant(config, name, common + opts, osp.join(ROOT, work_root, name),
                        log=lambda m: print(m, flush=True))
        print(f'{prog}: {len(variants)} variant(s) done in {time.time() - t0:.0f} s', flush=True)
    except AblationError as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        return 2
    from deepcis_mm.evaluation.compare_runs import CompareError, compare_runs
    try:
        out = compare_runs([osp.join(ROOT, work_root, n) for n in variants], osp.join(ROOT, compare_out),
                           per_class=True)
    except CompareError as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        return 2
    print(out['text'])
    print(f'{prog}: comparison in {compare_out} (compare.md, compare.csv, compare.png, per_class.csv)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
