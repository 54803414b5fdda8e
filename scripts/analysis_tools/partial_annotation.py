#!/usr/bin/env python
"""Partial annotation study in one command: the same synthetic data and budget (demo model, 450
iterations, fully annotated eval), trained on fully annotated train (upper bound), on partially
annotated train as it is (naive), and with each remedy, at one or more training seeds; then one table.

    python scripts/analysis_tools/partial_annotation.py [--annotate-frac 0.8] [--seed 0]
        [--variants full,naive,ignore,known-background,blurred,oracle@0] [--train-seeds 0,1,2]
        [--work-dir work_dirs/partial_annotation] [--data-root data/partial_annotation] [--print-only]

Data (written once, kept; delete the folder to rewrite it): the demo's synthetic release (4 cultures,
48 train, 8 val, 10 eval images per level, 256 px) at ``--annotate-frac`` with the release's
background-blurred train/val copies, and the same images fully annotated, each converted by the EVICAN
converter (the blurred one with ``--train-images/--val-images`` on the blurred folders). Every variant
is evaluated on the fully annotated eval split.

Variants (docs/partial_annotation.md): ``full`` and ``naive`` (the demo config), ``ignore``
(configs/partial_annotation/*_ignore-unannotated.py), ``known-background``
(configs/partial_annotation/*_known-background.py), ``blurred`` (the demo config on the blurred copies),
``blurred-ignore`` (both), and ``oracle``: negatives from known background with the *true* unannotated
cells as ignore regions (the fully annotated file with the cells the partial one leaves out marked
``iscrowd``; not available on real data): the ceiling of any remedy that only changes which examples
count as background, since the unannotated cells are still missing as positives. Each trains and tests through scripts/analysis_tools/ablation.py's runner
(a variant whose work_dir holds test tables is kept; delete it to retrain). The table
(``<work-dir>/partial_annotation.md``) has bbox/segm mAP per level, class-agnostic AP, recall at IoU 0.5,
precision at IoU 0.5 of the detections scoring >= 0.5, and the share of the naive-to-full segm mAP gap
each variant recovers; with several ``--train-seeds`` (``randomness.seed``; work_dirs ``<variant>`` for
seed 0, ``<variant>_seed<k>`` otherwise) the table holds the means over seeds and a second table each
seed's segm mAP and the gap recovered from the means. ``deepcis compare``'s full table is in
``<work-dir>/compare``. Two processes with disjoint ``--variants``/``--train-seeds`` can train side by
side into the same ``--work-dir``; a last call with all of them keeps every trained run and writes the
table.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import Dict, List, Sequence, Tuple

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
    'oracle': (DEMO, 'oracle'),
}
# the oracle trains the demo config with the known-background assigners on the true ignore regions
ORACLE_OPTIONS = ['model.train_cfg.rpn.assigner.type=KnownBackgroundAssigner'] + [
    f'model.train_cfg.rcnn.{i}.assigner.type=KnownBackgroundAssigner' for i in range(3)]
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
    oracle = osp.join(osp.dirname(out['partial'].rstrip('/')), 'oracle_annotations')
    dst = osp.join(oracle, 'instances_train.json')
    if not osp.isfile(dst):
        log(f'writing oracle annotations (unannotated objects as iscrowd) -> {dst}')
        ann = osp.join('annotations', 'instances_train.json')
        oracle_annotations(osp.join(out['full'], ann), osp.join(out['partial'], ann), dst)
    out['oracle'] = oracle
    return out


def oracle_annotations(full_file: str, partial_file: str, out_file: str) -> Tuple[int, int]:
    """The fully annotated COCO file with every object the partial file leaves out marked ``iscrowd``
    (mmdet: an ignored instance), matched by image file name, category name and polygon. Returns
    (annotated, marked) counts; an object of the partial file missing from the full one is an error."""
    from deepcis_mm.utils import atomic_write_text
    with open(full_file) as f:
        full = json.load(f)
    with open(partial_file) as f:
        part = json.load(f)

    def keys(coco):
        files = {im['id']: im['file_name'] for im in coco['images']}
        cats = {c['id']: c['name'] for c in coco['categories']}
        return [(files[a['image_id']], cats[a['category_id']], json.dumps(a['segmentation']))
                for a in coco['annotations']]
    annotated = set(keys(part))
    full_keys = keys(full)
    missing = annotated - set(full_keys)
    if missing:
        raise ValueError(f'{partial_file}: {len(missing)} object(s) not in {full_file}, e.g. {sorted(missing)[0][:2]}')
    marked = 0
    for a, k in zip(full['annotations'], full_keys):
        if k not in annotated:
            a['iscrowd'] = 1
            marked += 1
    atomic_write_text(out_file, json.dumps(full))
    return len(annotated), marked


def variant_options(kind: str, data: Dict[str, str], seed: int = 0) -> List[str]:
    """--cfg-options of a variant: its training data and seed; eval on the fully annotated eval split."""
    ev = data['partial']  # the eval split does not depend on the annotated fraction
    opts = [f'val_dataloader.dataset.data_root={ev}', f'test_dataloader.dataset.data_root={ev}',
            f'val_evaluator.ann_file={ev}annotations/instances_eval.json',
            f'test_evaluator.ann_file={ev}annotations/instances_eval.json']
    if kind == 'oracle':  # the full images, the oracle file (an absolute ann_file ignores data_root)
        opts += [f'train_dataloader.dataset.data_root={data["full"]}',
                 f'train_dataloader.dataset.ann_file={osp.abspath(osp.join(data["oracle"], "instances_train.json"))}',
                 *ORACLE_OPTIONS]
    else:
        opts.append(f'train_dataloader.dataset.data_root={data[kind]}')
    return opts + [f'randomness.seed={seed}']


def run_name(variant: str, seed: int) -> str:
    """Work-dir name of a variant at a training seed (seed 0: the variant's name, as before seeds)."""
    return variant if seed == 0 else f'{variant}_seed{seed}'


def _pct(v):
    return 'n/a' if v is None else f'{100 * v:.1f}'


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _metrics(run) -> Dict[str, float]:
    """The table's numbers of one evaluated run (fractions; None where the run lacks them)."""
    out = {}
    for iou in ('bbox', 'segm'):
        t = run.tables.get(iou)
        for lvl in ('1', '2', '3', 'all'):
            out[f'{iou} {lvl}'] = t['levels'][lvl]['mAP'] if t else None
        ag = (t or {}).get('agnostic', {}).get('all', {})
        for key in ('mAP', 'AR_50', 'precision_50'):
            out[f'{iou} agn {key}'] = ag.get(key)
    return out


def summary_table(runs: Dict[str, Sequence], annotate_frac: float) -> str:
    """Markdown: per variant (means over its seeds' runs) bbox/segm mAP per level, agnostic
    AP/recall/precision, gap recovered; with several seeds also each seed's segm mAP."""
    levels = (('1', 'L1'), ('2', 'L2'), ('3', 'L3'), ('all', 'all'))
    header = ['variant', 'seeds'] + [f'{iou} mAP {n}' for iou in ('bbox', 'segm') for _, n in levels]
    header += ['agn. bbox AP', 'agn. segm AP', 'agn. bbox recall@0.5', 'agn. segm recall@0.5',
               'agn. segm precision@0.5 (score>=0.5)', 'segm gap recovered', 'agn. segm gap recovered']
    means = {name: {k: _mean([_metrics(r)[k] for r in rs]) for k in _metrics(rs[0])}
             for name, rs in runs.items() if rs}

    def recovered(key, name):
        # paired by seed: full and naive at the variant's own seeds (a seed moves every run alike)
        if name in ('full', 'naive'):
            return 'n/a'
        seeds = {r.seed for r in runs[name]}
        ref = {n: [_metrics(r)[key] for r in runs.get(n, []) if r.seed in seeds] for n in ('full', 'naive')}
        if any(len(v) < len(seeds) or None in v for v in ref.values()) or means[name][key] is None:
            return 'n/a'
        full, naive = _mean(ref['full']), _mean(ref['naive'])
        if abs(full - naive) < 1e-9:
            return 'n/a'
        return f'{100 * (means[name][key] - naive) / (full - naive):.0f} %'

    full, naive = (means.get(n, {}).get('segm all') for n in ('full', 'naive'))
    gap = full - naive if full is not None and naive is not None else None
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for name, m in means.items():
        row = [name, str(len(runs[name]))]
        row += [_pct(m[f'{iou} {lvl}']) for iou in ('bbox', 'segm') for lvl, _ in levels]
        row += [_pct(m[k]) for k in ('bbox agn mAP', 'segm agn mAP', 'bbox agn AR_50', 'segm agn AR_50',
                                     'segm agn precision_50')]
        row += [recovered('segm all', name), recovered('segm agn mAP', name)]
        lines.append('| ' + ' | '.join(row) + ' |')
    n_seeds = max(len(rs) for rs in runs.values())
    note = (f'COCO metrics in % on the fully annotated eval split; train/val annotated fraction '
            f'{annotate_frac:g} (full: 1)' + (f'; means over training seeds' if n_seeds > 1 else '')
            + '. Gap recovered = (variant - naive) / (full - naive), full and naive at the variant\'s own '
            'seeds, of segm mAP all'
            + (f' (gap {100 * gap:.1f} points)' if gap is not None else '')
            + ' and of class-agnostic segm AP (cells and nuclei found, whatever their class).')
    text = note + '\n\n' + '\n'.join(lines) + '\n'
    if n_seeds > 1:
        seeds = sorted({r.seed for rs in runs.values() for r in rs})
        head = ['variant'] + [f'segm mAP all, seed {k}' for k in seeds] + ['mean', 'min-max']
        rows = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
        for name, rs in runs.items():
            by_seed = {r.seed: _metrics(r)['segm all'] for r in rs}
            vals = [v for v in by_seed.values() if v is not None]
            rows.append('| ' + ' | '.join([name] + [_pct(by_seed.get(k)) for k in seeds] + [
                _pct(_mean(vals)), f'{_pct(min(vals))}-{_pct(max(vals))}' if vals else 'n/a']) + ' |')
        text += '\nSegm mAP all per training seed (%):\n\n' + '\n'.join(rows) + '\n'
    return text


def plan_seeds(variants: str, train_seeds: str) -> Dict[str, List[int]]:
    """``--variants`` and ``--train-seeds`` -> {variant: its training seeds}; ``NAME@1+2`` gives a
    variant its own seeds. A bad name or seed list is a ValueError naming the flag."""
    def seeds(text: str, sep: str, flag: str) -> List[int]:
        try:
            out = sorted({int(k) for k in text.split(sep) if k.strip()})
        except ValueError:
            out = []
        if not out or min(out) < 0:
            raise ValueError(f'{flag}: one or more integers >= 0 separated by {sep!r}, got {text!r}')
        return out

    default = seeds(train_seeds, ',', '--train-seeds')
    specs = [v.strip().partition('@') for v in variants.split(',') if v.strip()]
    unknown = [n for n, _, _ in specs if n not in VARIANTS]
    if unknown or not specs:
        raise ValueError(f'--variants: unknown {unknown} (choose from {", ".join(VARIANTS)})')
    return {n: seeds(k, '+', f'--variants {n}@') if at else default for n, at, k in specs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--annotate-frac', type=float, default=0.8,
                   help='annotated fraction of train/val cells (the demo data: 0.8)')
    p.add_argument('--seed', type=int, default=0, help='data seed (training seeds: --train-seeds)')
    p.add_argument('--train-seeds', default='0',
                   help='comma-separated training seeds (randomness.seed), each variant trained once per seed')
    p.add_argument('--variants', default=DEFAULT_VARIANTS,
                   help=f'comma-separated, from {", ".join(VARIANTS)} (default {DEFAULT_VARIANTS}); '
                        'NAME@0+1 trains that variant at these seeds instead of --train-seeds')
    p.add_argument('--data-root', default='data/partial_annotation')
    p.add_argument('--work-dir', default='work_dirs/partial_annotation')
    p.add_argument('--print-only', action='store_true', help='prepare the data, print the commands, train nothing')
    args = p.parse_args(argv)
    prog = 'partial_annotation.py'
    try:
        seeds_of = plan_seeds(args.variants, args.train_seeds)
    except ValueError as e:
        p.error(str(e))
    names = list(seeds_of)
    if not 0.0 < args.annotate_frac < 1.0:
        p.error('--annotate-frac: strictly between 0 and 1 (1 is the upper bound "full")')
    # the runner's commands run in the repository: paths inside it relative to it, others absolute
    args.data_root, args.work_dir = (_from_root(x) for x in (args.data_root, args.work_dir))
    os.chdir(ROOT)
    try:
        data = prepare_data(args.data_root, args.annotate_frac, args.seed)
    except (OSError, ValueError) as e:  # e.g. a partial file that is no subset of the full one
        print(f'{prog}: error: {e}', file=sys.stderr)
        return 2
    plan = [(n, k, osp.join(args.work_dir, run_name(n, k))) for n in names for k in seeds_of[n]]
    if args.print_only:
        for n, k, wd in plan:
            config, kind = VARIANTS[n]
            print(f'# {run_name(n, k)}\n{sys.executable} tools/train.py {config} --work-dir {wd} --cfg-options '
                  + ' '.join(variant_options(kind, data, k)))
        return 0
    t0 = time.time()
    try:
        for n, k, wd in plan:
            config, kind = VARIANTS[n]
            run_variant(config, run_name(n, k), variant_options(kind, data, k), wd,
                        log=lambda m: print(m, flush=True))
    except AblationError as e:
        print(f'{prog}: error: {e}', file=sys.stderr)
        return 2
    from deepcis_mm.evaluation.compare_runs import collect_runs, compare_runs
    from deepcis_mm.utils import atomic_write_text
    compare_runs([wd for _, _, wd in plan], osp.join(args.work_dir, 'compare'), per_class=True)
    runs: Dict[str, list] = {n: [] for n in names}
    for (n, k, _), run in zip(plan, collect_runs([wd for _, _, wd in plan])):
        run.seed = k
        runs[n].append(run)
    text = summary_table(runs, args.annotate_frac)
    atomic_write_text(osp.join(args.work_dir, 'partial_annotation.md'), text)
    print(text)
    print(f'{prog}: {len(plan)} run(s) in {time.time() - t0:.0f} s; table in '
          f'{osp.join(args.work_dir, "partial_annotation.md")}, full comparison in {osp.join(args.work_dir, "compare")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
