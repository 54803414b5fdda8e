#!/usr/bin/env python
"""Partial annotation study in one command: the same synthetic data and budget (demo model, 450
iterations, seed 0, fully annotated eval), trained on fully annotated train (upper bound), on partially
annotated train as it is (naive), and with each remedy; then one table.

    python scripts/analysis_tools/partial_annotation.py [--annotate-frac 0.8] [--seed 0]
        [--variants full,naive,ignore,known-background,blurred] [--work-dir work_dirs/partial_annotation]
        [--data-root data/partial_annotation] [--print-only]

Data (written once, kept; delete the folder to rewrite it): the demo's synthetic release (4 cultures,
48 train, 8 val, 10 eval images per level, 256 px) at ``--annotate-frac`` with the release's
background-blurred train/val copies, and the same images fully annotated, each converted by the EVICAN
converter (the blurred one with ``--train-images/--val-images`` on the blurred folders). Every variant
is evaluated on the fully annotated eval split.

Variants (docs/partial_annotation.md): ``full`` and ``naive`` (the demo config), ``ignore``
(configs/partial_annotation/*_ignore-unannotated.py), ``known-background``
(configs/partial_annotation/*_known-background.py), ``blurred`` (the demo config on the blurred copies),
``blurred-ignore`` (both). Each trains and tests through scripts/analysis_tools/ablation.py's runner
(a variant whose work_dir holds test tables is kept; delete it to retrain). The table
(``<work-dir>/partial_annotation.md``) has bbox/segm mAP per level, class-agnostic AP, recall at IoU 0.5,
precision at IoU 0.5 of the detections scoring >= 0.5, and the share of the naive-to-full segm mAP gap
each variant recovers; ``deepcis compare``'s full table is in ``<work-dir>/compare``.
"""
import argparse
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Tuple

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)  # repo root: scripts.*

from scripts.analysis_tools.ablation import AblationError, _from_root, run_variant  # noqa: E402

DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'
REMEDY = 'configs/partial_annotation/deepcis_s14-dcnv2_fpn_demo_synthetic-evican_{}.py'
# name -> (config, training data: 'full' | 'partial' | 'blurred')
VARIANTS: Dict[str, Tuple[str, str]] = {
    'full': (DEMO, 'full'),
    'naive': (DEMO, 'partial'),
    'ignore': (REMEDY.format('ignore-unannotated'), 'partial'),
    'known-background': (REMEDY.format('known-background'), 'partial'),
    'blurred': (DEMO, 'blurred'),
    'blurred-ignore': (REMEDY.format('ignore-unannotated'), 'blurred'),
}
DEFAULT_VARIANTS = 'full,naive,ignore,known-background,blurred'


def prepare_data(data_root: str, annotate_frac: float, seed: int, log=print) -> Dict[str, str]:
    """Write (once) the synthetic releases and their converted folders; return {kind: prepared root}."""
    from scripts.dataset_converters.evican_release import convert_release
    from scripts.dataset_converters.synthetic_evican import DEMO_DATA, make_synthetic_evican
    out = {}
    for kind, frac in (('full', 1.0), ('partial', annotate_frac)):
        base = osp.join(data_root, f'frac{frac}' + (f'_seed{seed}' if seed else ''))
        release = osp.join(base, 'release')
        if not osp.isfile(osp.join(release, 'instances_eval2019_difficult_EVICAN60.json')):
            log(f'writing synthetic release (annotated fraction {frac:g}) -> {release}')
            make_synthetic_evican(release, **dict(DEMO_DATA, seed=seed), annotate_frac=frac,
                                  blurred_background=(kind == 'partial'))
        targets = [(kind, osp.join(base, 'prepared'), None)]
        if kind == 'partial':
            blurred = {s: osp.join(release, 'Images', f'EVICAN_{s}2019_BGblurred') for s in ('train', 'val')}
            targets.append(('blurred', osp.join(base, 'prepared_blurred'), blurred))
        for name, dst, image_dirs in targets:
            if not osp.isfile(osp.join(dst, 'annotations', 'instances_eval.json')):
                log(f'converting {release} -> {dst}' + (' (blurred train/val images)' if image_dirs else ''))
                convert_release(release, dst, image_dirs=image_dirs, verbose=False)
            out[name] = dst + '/'
    return out


def variant_options(kind: str, data: Dict[str, str]) -> List[str]:
    """--cfg-options of a variant: its training data; eval on the fully annotated eval split."""
    ev = data['partial']  # the eval split does not depend on the annotated fraction
    return [f'val_dataloader.dataset.data_root={ev}', f'test_dataloader.dataset.data_root={ev}',
            f'val_evaluator.ann_file={ev}annotations/instances_eval.json',
            f'test_evaluator.ann_file={ev}annotations/instances_eval.json',
            f'train_dataloader.dataset.data_root={data[kind]}']


def _pct(v):
    return 'n/a' if v is None else f'{100 * v:.1f}'


def summary_table(runs, annotate_frac: float) -> str:
    """Markdown: per variant bbox/segm mAP per level, agnostic AP/recall/precision, gap recovered."""
    levels = (('1', 'L1'), ('2', 'L2'), ('3', 'L3'), ('all', 'all'))
    header = ['variant'] + [f'{iou} mAP {n}' for iou in ('bbox', 'segm') for _, n in levels]
    header += ['agn. bbox AP', 'agn. segm AP', 'agn. bbox recall@0.5', 'agn. segm recall@0.5',
               'agn. segm precision@0.5 (score>=0.5)', 'segm gap recovered']
    by = {r.label: r for r in runs}

    def segm_all(r):
        return r.tables['segm']['levels']['all']['mAP'] if r and r.tables.get('segm') else None
    full, naive = segm_all(by.get('full')), segm_all(by.get('naive'))
    gap = full - naive if full is not None and naive is not None else None
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for r in runs:
        row = [r.label]
        for iou in ('bbox', 'segm'):
            t = r.tables.get(iou)
            row += [_pct(t['levels'][lvl]['mAP'] if t else None) for lvl, _ in levels]
        ag = {iou: (r.tables.get(iou) or {}).get('agnostic', {}).get('all', {}) for iou in ('bbox', 'segm')}
        row += [_pct(ag['bbox'].get('mAP')), _pct(ag['segm'].get('mAP')), _pct(ag['bbox'].get('AR_50')),
                _pct(ag['segm'].get('AR_50')), _pct(ag['segm'].get('precision_50'))]
        s = segm_all(r)
        row.append('n/a' if gap is None or s is None or abs(gap) < 1e-9 or r.label in ('full', 'naive')
                   else f'{100 * (s - naive) / gap:.0f} %')
        lines.append('| ' + ' | '.join(row) + ' |')
    note = (f'COCO metrics in % on the fully annotated eval split; train/val annotated fraction '
            f'{annotate_frac:g} (full: 1). Gap recovered = (variant - naive) / (full - naive) of segm mAP all'
            + (f' (gap {100 * gap:.1f} points)' if gap is not None else '') + '.')
    return note + '\n\n' + '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--annotate-frac', type=float, default=0.8,
                   help='annotated fraction of train/val cells (the demo data: 0.8)')
    p.add_argument('--seed', type=int, default=0, help='data seed (training uses the config seed, 0)')
    p.add_argument('--variants', default=DEFAULT_VARIANTS,
                   help=f'comma-separated, from {", ".join(VARIANTS)} (default {DEFAULT_VARIANTS})')
    p.add_argument('--data-root', default='data/partial_annotation')
    p.add_argument('--work-dir', default='work_dirs/partial_annotation')
    p.add_argument('--print-only', action='store_true', help='prepare the data, print the commands, train nothing')
    args = p.parse_args(argv)
    prog = 'partial_annotation.py'
    names = [n.strip() for n in args.variants.split(',') if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        p.error(f'--variants: unknown {unknown} (choose from {", ".join(VARIANTS)})')
    if not 0.0 < args.annotate_frac < 1.0:
        p.error('--annotate-frac: strictly between 0 and 1 (1 is the upper bound "full")')
    # the runner's commands run in the repository: paths inside it relative to it, others absolute
    args.data_root, args.work_dir = (_from_root(x) for x in (args.data_root, args.work_dir))
    os.chdir(ROOT)
    data = prepare_data(args.data_root, args.annotate_frac, args.seed)
    work_dirs = {n: osp.join(args.work_dir, n) for n in names}
    if args.print_only:
        for n in names:
            config, kind = VARIANTS[n]
            print(f'# {n}\n{sys.executable} tools/train.py {config} --work-dir {work_dirs[n]} --cfg-options '
                  + ' '.join(variant_options(kind, data)))
        return 0
    t0 = time.time()
    try:
        for n in names:
            config, kind = VARIANTS[n]
            run_variant(config, n, variant_options(kind, data), work_dirs[n], log=lambda m: print(m, flush=True))
    except AblationError as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        return 2
    from deepcis_mm.evaluation.compare_runs import collect_runs, compare_runs
    compare_runs([work_dirs[n] for n in names], osp.join(args.work_dir, 'compare'), per_class=True)
    text = summary_table(collect_runs([work_dirs[n] for n in names]), args.annotate_frac)
    from deepcis_mm.utils import atomic_write_text
    atomic_write_text(osp.join(args.work_dir, 'partial_annotation.md'), text)
    print(text)
    print(f'{prog}: {len(names)} variant(s) in {time.time() - t0:.0f} s; table in '
          f'{osp.join(args.work_dir, "partial_annotation.md")}, full comparison in {osp.join(args.work_dir, "compare")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
