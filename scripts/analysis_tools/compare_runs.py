#!/usr/bin/env python
"""Put evaluated runs side by side: one markdown/CSV table and a grouped bar plot.

    python scripts/analysis_tools/compare_runs.py work_dirs/a work_dirs/b [--per-class] [--out DIR]
    python scripts/analysis_tools/compare_runs.py 'work_dirs/ablation/*'

The same as ``deepcis compare``; the logic is :mod:`deepcis_mm.evaluation.compare_runs` (user API).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from deepcis_mm.evaluation.compare_runs import add_compare_arguments, compare_main  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_compare_arguments(p)
    return compare_main(p.parse_args(argv), prog='compare_runs.py')


if __name__ == '__main__':
    sys.exit(main())
