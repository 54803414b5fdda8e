#!/usr/bin/env python
"""Normalize an EVICAN release (or synthetic data in its layout) into COCO files for EvicanDataset.

    python scripts/dataset_converters/prepare_evican.py SRC DST [--variant EVICAN60|EVICAN2|auto] [--skip-bad-images]

Logic: scripts/dataset_converters/evican_release.py. Prints images/instances per class, split and difficulty level.
"""
import argparse
import logging
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root: scripts.*

from scripts.dataset_converters.evican_release import ReleaseError, convert_release  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='release root (holds instances_*_EVICAN60.json and Images/)')
    p.add_argument('dst', help='output folder (annotations/, images/, summary.*)')
    p.add_argument('--variant', default='auto', choices=['auto', 'EVICAN60', 'EVICAN2'])
    p.add_argument('--skip-bad-images', action='store_true',
                   help='drop missing/unreadable images (with a warning) instead of failing')
    for split in ('train', 'val', 'eval'):
        p.add_argument(f'--{split}-images', metavar='DIR',
                       help=f'use DIR as the {split} image folder (e.g. the background-blurred release)')
    p.add_argument('--quiet', action='store_true', help='do not print the summary')
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='prepare_evican: warning: %(message)s')
    dirs = {s: getattr(args, f'{s}_images') for s in ('train', 'val', 'eval')}
    try:
        convert_release(args.src, args.dst, args.variant, args.skip_bad_images,
                        {k: v for k, v in dirs.items() if v}, verbose=not args.quiet)
    except (ReleaseError, ValueError) as e:
        print(f'prepare_evican: error: {e}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
