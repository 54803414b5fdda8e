#!/usr/bin/env python
"""Instance area / aspect-ratio histograms per kind and the anchor sizes and ratios they suggest.

    python scripts/analysis_tools/dataset_stats.py PREPARED_DIR [--out DIR] [--splits train val eval]

PREPARED_DIR is the output of scripts/dataset_converters/prepare_evican.py (real or synthetic). Writes
``stats_hist.png`` and ``anchor_stats.json`` to --out (default PREPARED_DIR) and prints the suggestion.
"""
import argparse
import os.path as osp
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # repo root: scripts.*

from deepcis_mm.utils import atomic_save, atomic_write_json  # noqa: E402
from scripts.analysis_tools.anchor_stats import anchor_report, instance_shapes  # noqa: E402

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER_MODEL = osp.join(ROOT, 'configs', '_base_', 'models', 'deepcis_cascade-mask-rcnn_s200-dcnv2_fpn.py')


def paper_anchors():
    """({kind: the paper's anchor sizes}, ratios), read from the paper model config (stated there once)."""
    from mmengine.config import Config
    cfg = Config.fromfile(PAPER_MODEL)
    return {'cell': tuple(cfg.cell_anchor_sizes), 'nucleus': tuple(cfg.nucleus_anchor_sizes)}, tuple(cfg.anchor_ratios)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('prepared')
    p.add_argument('--out')
    p.add_argument('--splits', nargs='+', default=['train', 'val', 'eval'])
    args = p.parse_args(argv)
    files = [osp.join(args.prepared, 'annotations', f'instances_{s}.json') for s in args.splits]
    files = [f for f in files if osp.isfile(f)]
    if not files:
        print(f'dataset_stats: error: no annotations/instances_{{{",".join(args.splits)}}}.json in '
              f'{args.prepared} (run scripts/dataset_converters/prepare_evican.py first)', file=sys.stderr)
        return 2
    try:
        shapes = instance_shapes(files)
    except ValueError as e:
        print(f'dataset_stats: error: {e}', file=sys.stderr)
        return 2
    report = anchor_report(shapes, *paper_anchors())
    out = args.out or args.prepared
    fig, axes = plt.subplots(len(shapes), 2, figsize=(10, 3.2 * len(shapes)), squeeze=False)
    for row, (kind, arr) in zip(axes, sorted(shapes.items())):
        row[0].hist(np.sqrt(arr[:, 2]), bins=40, color='tab:blue')
        row[0].set(title=f'{kind}: sqrt(mask area) [px]', xlabel='px', ylabel='instances')
        row[1].hist(np.log2(arr[:, 1] / arr[:, 0]), bins=40, color='tab:orange')
        row[1].set(title=f'{kind}: aspect ratio h/w', xlabel='log2(h/w)')
    fig.tight_layout()
    atomic_save(osp.join(out, 'stats_hist.png'), lambda t: fig.savefig(t, dpi=90))
    atomic_write_json(osp.join(out, 'anchor_stats.json'), report, indent=1)
    for kind, r in report.items():
        print(f'{kind}: {r["n"]} instances; sqrt(area) px p1/p50/p99 = '
              f'{r["sqrt_area_percentiles"][1]:.1f}/{r["sqrt_area_percentiles"][50]:.1f}/'
              f'{r["sqrt_area_percentiles"][99]:.1f}; h/w p5/p95 = {r["aspect_ratio_percentiles"][5]:.2f}/'
              f'{r["aspect_ratio_percentiles"][95]:.2f}')
        print(f'  suggested sizes {r["suggested"]["sizes"]} ratios {r["suggested"]["ratios"]} '
              f'(coverage@IoU0.5 {r["coverage_suggested"]:.3f}); paper sizes coverage '
              f'{r["coverage_paper"] if r["coverage_paper"] is None else round(r["coverage_paper"], 3)}')
    print(f'wrote {osp.join(out, "stats_hist.png")} and {osp.join(out, "anchor_stats.json")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
