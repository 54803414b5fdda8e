#!/usr/bin/env python
"""Write synthetic EVICAN data in the real release layout (then run scripts/dataset_converters/prepare_evican.py on it).

    python scripts/dataset_converters/make_synthetic_evican.py OUT [--cultures 4 | --cultures HeLa,MCF-7] [--seed 0] ...

Logic: scripts/dataset_converters/synthetic_evican.py. Same arguments -> byte-identical output.
"""
import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root: scripts.*

from scripts.dataset_converters.synthetic_evican import CULTURES, DEMO_DATA, make_synthetic_evican  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('out', help='output release root')
    p.add_argument('--cultures', default='4',
                   help=f'a number (first N of {len(CULTURES)} built-in lines) or comma-separated names')
    p.add_argument('--train', type=int, default=48, help='train images')
    p.add_argument('--val', type=int, default=8, help='val images')
    p.add_argument('--eval-per-level', type=int, default=6, help='eval images per difficulty level')
    p.add_argument('--size', type=int, default=256, help='train/val image side (px)')
    p.add_argument('--eval-size', type=int, nargs=2, metavar=('MIN', 'MAX'),
                   help='eval image side range (default 0.6x..1.3x size)')
    p.add_argument('--annotate-frac', type=float, default=0.8,
                   help='fraction of train/val cells annotated (EVICAN is partially annotated)')
    p.add_argument('--blurred-background', action='store_true',
                   help='also write the release\'s background-blurred train/val copies '
                        '(Images/EVICAN_{train,val}2019_BGblurred/, same file names; for prepare_evican.py '
                        '--train-images/--val-images)')
    p.add_argument('--blur-sigma', type=float, default=6.0,
                   help='their Gaussian blur sigma in px at --size 256 (scaled with --size)')
    p.add_argument('--variant', default='EVICAN60', choices=['EVICAN60', 'EVICAN2'])
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--coculture', type=int, default=0, metavar='N',
                   help='also write N co-culture eval images (two cultures per field) as the extra eval '
                        'subset instances_eval2019_coculture_<variant>.json (default 0: none)')
    p.add_argument('--demo', action='store_true',
                   help='the data of `make demo`: ' + ', '.join(
                       f'{k}={",".join(v) if k == "cultures" else v}' for k, v in DEMO_DATA.items())
                   + ' (overrides those options)')
    args = p.parse_args(argv)
    if not 0.0 <= args.annotate_frac <= 1.0:
        p.error('--annotate-frac: between 0 and 1')
    if args.demo:
        args.cultures = ','.join(DEMO_DATA['cultures'])
        args.train, args.val = DEMO_DATA['n_train'], DEMO_DATA['n_val']
        args.eval_per_level, args.seed = DEMO_DATA['n_eval_per_level'], DEMO_DATA['seed']
    if args.cultures.isdigit():
        n = int(args.cultures)
        if not 1 <= n <= len(CULTURES):
            p.error(f'--cultures: between 1 and {len(CULTURES)}')
        cultures = CULTURES[:n]
    else:
        cultures = tuple(c.strip() for c in args.cultures.split(',') if c.strip())
    t = time.time()
    counts = make_synthetic_evican(args.out, cultures, args.train, args.val, args.eval_per_level,
                                   args.size, args.eval_size, args.seed, args.annotate_frac, args.variant,
                                   args.blurred_background, args.blur_sigma, n_coculture=args.coculture)
    n_img = sum(c['images'] for c in counts.values())
    print(f'wrote {n_img} images ({", ".join(cultures)}) to {args.out} in {time.time() - t:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
