"""Side-by-side comparison of runs from the tables :class:`APTableHook` writes (``ap_tables/*/metrics.json``).

User API (``deepcis compare`` and ``scripts/analysis_tools/ablation.py`` call it; notebooks can too):
it only reads finished tables, so it lives in the package next to the metric whose output it reads.

A run is one ``metrics.json``. Inputs may be work_dirs, ``ap_tables/`` folders, single table folders or
glob patterns of those. In a work_dir (or ``ap_tables/``) the newest test table is taken, else the val
table of the last iteration (``select='val'``/``'test'`` forces one kind).

Runs with different class sets are compared on the classes they share (matched by name): the level
means are then recomputed over the shared classes from the stored per-class AP, and the numbers that
cannot be restricted to those classes (class-agnostic AP, culture accuracy) are n/a.
"""
import csv
import glob
import io
import json
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

from ..datasets.evican import LEVELS as EVICAN_LEVELS
from ..utils import atomic_save, atomic_write_text, markdown_table

LEVELS = tuple((str(k), f'L{k}') for k in EVICAN_LEVELS) + (('all', 'all'),)
IOU_TYPES = ('bbox', 'segm')


class CompareError(ValueError):
    """Bad input to the comparison; the message is one line naming the path."""


class Run:
    """One evaluated run: its tables, the folder they came from and a unique short label."""

    def __init__(self, folder: str, data: dict, label: str = ''):
        self.folder, self.data, self.label = folder, data, label
        self.run = data.get('run') or {}
        self.tables = data['tables']

    @property
    def classes(self) -> List[str]:
        return list(self.tables.get('classes') or [])

    @property
    def iteration(self) -> Optional[int]:
        it = self.run.get('iteration')
        if it is None:  # tables written before run info was recorded: the folder/checkpoint name tells
            m = re.search(r'(?:^|_)iter_(\d+)', osp.basename(self.folder))
            it = int(m.group(1)) if m else None
        return it

    @property
    def config_name(self) -> Optional[str]:
        name = self.run.get('config_name')
        if not name:  # mmengine dumps the config into the work_dir as <config name>.py
            dumped = sorted(glob.glob(osp.join(osp.dirname(osp.dirname(self.folder)), '*.py')))
            name = osp.splitext(osp.basename(dumped[0]))[0] if len(dumped) == 1 else None
        return name


def _load(folder: str) -> dict:
    path = osp.join(folder, 'metrics.json')
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise CompareError(f'{path}: cannot read ({e.strerror})')
    except ValueError as e:
        raise CompareError(f'{path}: not valid JSON ({e})')
    if not isinstance(data, dict) or not isinstance(data.get('tables'), dict) or \
            not any(isinstance(data['tables'].get(t), dict) for t in IOU_TYPES):
        raise CompareError(f'{path}: no bbox/segm tables (not written by APTableHook?)')
    return data


def _table_folders(ap_tables: str) -> List[str]:
    return sorted(osp.dirname(p) for p in glob.glob(osp.join(ap_tables, '*', 'metrics.json')))


def _pick(folders: List[str], select: str, where: str) -> str:
    """Newest test table (names end in a timestamp) or the val table of the last iteration/epoch."""
    tests = [f for f in folders if osp.basename(f).startswith('test_')]
    vals = [f for f in folders if re.match(r'(iter|epoch)_\d+$', osp.basename(f))]
    if select in ('auto', 'test') and tests:
        return max(tests, key=lambda f: (osp.basename(f)[-15:], f))
    if select in ('auto', 'val') and vals:
        return max(vals, key=lambda f: int(osp.basename(f).split('_')[1]))
    raise CompareError(f'{where}: no {"" if select == "auto" else select + " "}tables '
                       f'(ap_tables/<iter_N|test_*>/metrics.json) found')


def resolve_input(path: str, select: str = 'auto') -> str:
    """The table folder (holding metrics.json) one input names."""
    if not osp.exists(path):
        raise CompareError(f'{path}: no such file or folder')
    if osp.isfile(path):
        if osp.basename(path) == 'metrics.json':
            return osp.dirname(path) or '.'
        raise CompareError(f'{path}: expected a work_dir, an ap_tables folder or a metrics.json')
    if osp.isfile(osp.join(path, 'metrics.json')):
        return path
    for ap_tables in (osp.join(path, 'ap_tables'), path):
        folders = _table_folders(ap_tables)
        if folders:
            return _pick(folders, select, path)
    raise CompareError(f'{path}: no ap_tables/*/metrics.json inside (not a work_dir of an evaluated run?)')


def collect_runs(inputs: Sequence[str], select: str = 'auto') -> List[Run]:
    """Load one :class:`Run` per input (globs expanded, in sorted order); labels are unique."""
    if select not in ('auto', 'test', 'val'):
        raise CompareError(f'select must be auto, test or val, got {select!r}')
    folders = []
    for item in inputs:
        if glob.has_magic(item):
            matches = sorted(glob.glob(item))
            if not matches:
                raise CompareError(f'{item}: the pattern matches nothing')
            # a pattern may also match what is not a run (e.g. the comparison's own output folder)
            found = []
            for m in matches:
                try:
                    found.append(resolve_input(m, select))
                except CompareError:
                    continue
            if not found:
                raise CompareError(f'{item}: the pattern matches no evaluated run (no ap_tables/*/metrics.json)')
            folders += found
        else:
            folders.append(resolve_input(item, select))
    if not folders:
        raise CompareError('no runs given')
    runs, seen = [], set()
    for folder in folders:
        folder = osp.normpath(folder)
        if folder in seen:
            continue
        seen.add(folder)
        runs.append(Run(folder, _load(folder)))
    _label(runs)
    return runs


def _label(runs: List[Run]) -> None:
    """The work_dir name of each run; the table folder is added where two runs share one."""
    def work_dir_name(r):
        parent = osp.dirname(r.folder)
        return osp.basename(osp.dirname(parent)) if osp.basename(parent) == 'ap_tables' else osp.basename(r.folder)
    names = [work_dir_name(r) for r in runs]
    for r, n in zip(runs, names):
        r.label = n if names.count(n) == 1 else f'{n}/{osp.basename(r.folder)}'


def shared_classes(runs: Sequence[Run]) -> List[str]:
    """Class names every run evaluated, in the first run's order."""
    common = set(runs[0].classes)
    for r in runs[1:]:
        common &= set(r.classes)
    return [c for c in runs[0].classes if c in common]


def _level_mean(table: dict, level: str, classes: Optional[set]) -> Optional[float]:
    """Level mAP; over ``classes`` only (mean of their per-class AP, n/a classes left out) if given."""
    if classes is None:
        return table['levels'][level]['mAP']
    vals = [r['mAP'] for r in table['per_class']
            if r['level'] == level and r['cls'] in classes and r['mAP'] is not None]
    return sum(vals) / len(vals) if vals else None


def comparison_rows(runs: Sequence[Run]) -> Tuple[List[str], List[List], str]:
    """(header, rows of raw values, note): one row per run."""
    classes = shared_classes(runs)
    same = all(sorted(r.classes) == sorted(runs[0].classes) for r in runs)
    subset = None if same else set(classes)
    header = ['run', 'config', 'iteration', 'split']
    header += [f'{iou} mAP {name}' for iou in IOU_TYPES for _, name in LEVELS]
    header += [f'{iou} agnostic mAP' for iou in IOU_TYPES]
    # recall at IoU 0.5 and precision at IoU 0.5 of the detections scoring >= 0.5 (class-agnostic)
    header += [f'{iou} agnostic {name}' for iou in IOU_TYPES for name in ('recall@0.5', 'precision@0.5')]
    header += ['culture acc.', 'classes']
    rows = []
    for r in runs:
        row = [r.label, r.config_name or 'n/a', r.iteration, r.run.get('mode') or _mode(r.folder)]
        for iou in IOU_TYPES:
            t = r.tables.get(iou)
            row += [_level_mean(t, lvl, subset) if t else None for lvl, _ in LEVELS]
        for iou in IOU_TYPES:
            t = r.tables.get(iou)
            row.append(t['agnostic']['all']['mAP'] if same and t and 'agnostic' in t else None)
        for iou in IOU_TYPES:
            t = r.tables.get(iou)
            ag = t['agnostic']['all'] if same and t and 'agnostic' in t else {}
            row += [ag.get('AR_50'), ag.get('precision_50')]  # None in tables older than these keys
        culture = r.tables.get('culture')
        row.append(culture['levels']['all']['accuracy'] if same and culture else None)
        row.append(len(classes) if subset else len(r.classes))
        rows.append(row)
    limits = sorted({r.tables[iou].get('max_dets') for r in runs for iou in IOU_TYPES
                     if r.tables.get(iou)} - {None})
    note = 'COCO AP in %' + (f' at up to {"/".join(map(str, limits))} detections per image' if limits else '')
    if subset is not None:
        note += (f'; the runs evaluate different classes: mAP over the {len(classes)} classes all share '
                 '(mean of their per-class AP), class-agnostic AP and culture accuracy n/a (they cannot be '
                 'restricted to the shared classes)')
    return header, rows, note


def _mode(folder: str) -> str:
    return 'test' if osp.basename(folder).startswith('test_') else 'val'


def per_class_rows(runs: Sequence[Run], iou: str = 'segm', level: str = 'all') -> Tuple[List[str], List[List]]:
    """One row per class (union of all runs, first seen order), one AP column per run; n/a where a run
    lacks the class or the class has no ground truth."""
    names = []
    for r in runs:
        names += [c for c in r.classes if c not in names]
    header = ['class'] + [r.label for r in runs]
    rows = []
    for c in names:
        row = [c]
        for r in runs:
            t = r.tables.get(iou) or {}
            hit = [x['mAP'] for x in t.get('per_class', []) if x['cls'] == c and x['level'] == level]
            row.append(hit[0] if hit else None)
        rows.append(row)
    return header, rows


def _fmt(v) -> str:
    if v is None:
        return 'n/a'
    return f'{100 * v:.2f}' if isinstance(v, float) else str(v)


def ap_markdown(header: List[str], rows: List[List]) -> str:
    """Markdown with AP values in % (2 decimals) and n/a for missing values."""
    return markdown_table(header, [[_fmt(v) for v in row] for row in rows]) + '\n'


def csv_table(header: List[str], rows: List[List]) -> str:
    """CSV with AP values as fractions (6 decimals), empty for n/a."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(header)
    for row in rows:
        w.writerow(['' if v is None else (f'{v:.6f}' if isinstance(v, float) else v) for v in row])
    return buf.getvalue()


def plot_comparison(header: List[str], rows: List[List], path: str, title: str = '') -> None:
    """Grouped bars: one group per mAP column (levels x bbox/segm), one bar per run."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    cols = [i for i, h in enumerate(header) if ' mAP ' in h or h.endswith('agnostic mAP') or h == 'culture acc.']
    n_runs = len(rows)
    width = 0.8 / max(n_runs, 1)
    fig, ax = plt.subplots(figsize=(max(7, 0.6 * len(cols) * max(1, n_runs / 2) + 2), 4.5))
    x = np.arange(len(cols))
    for k, row in enumerate(rows):
        vals = [row[i] for i in cols]
        xs = x - 0.4 + width * (k + 0.5)
        ax.bar(xs, [0 if v is None else 100 * v for v in vals], width, label=str(row[0]))
        for xi, v in zip(xs, vals):
            if v is None:
                ax.text(xi, 1, 'n/a', ha='center', va='bottom', fontsize=6, rotation=90, color='gray')
    ax.set_xticks(x)
    ax.set_xticklabels([header[i].replace(' mAP ', '\n').replace(' agnostic mAP', '\nagnostic')
                        .replace('culture acc.', 'culture\nacc.') for i in cols], fontsize=8)
    top = max([100 * row[i] for row in rows for i in cols if row[i] is not None] or [0])
    ax.set(ylabel='%', ylim=(0, min(100, max(5, 1.15 * top))), title=title)
    ax.legend(fontsize=7, ncol=min(n_runs, 4))
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=90, format='png'))
    plt.close(fig)


def compare_runs(inputs: Sequence[str], out_dir: str, per_class: bool = False, select: str = 'auto',
                 iou: str = 'segm', level: str = 'all') -> Dict[str, str]:
    """Compare runs; write ``compare.md``, ``compare.csv``, ``compare.png`` (and ``per_class.md/.csv``
    with ``per_class``) into ``out_dir``. Returns {kind: path} and the markdown under 'markdown'."""
    if iou not in IOU_TYPES:
        raise CompareError(f'--iou must be bbox or segm, got {iou!r}')
    if level not in dict(LEVELS):
        raise CompareError(f'--level must be one of {", ".join(dict(LEVELS))}, got {level!r}')
    runs = collect_runs(inputs, select)
    header, rows, note = comparison_rows(runs)
    md = f'{note}.\n\n' + ap_markdown(header, rows) + '\nTables: ' + ', '.join(
        f'{r.label} = `{r.folder}`' for r in runs) + '\n'
    out = dict(markdown=osp.join(out_dir, 'compare.md'), csv=osp.join(out_dir, 'compare.csv'),
               png=osp.join(out_dir, 'compare.png'))
    if per_class:
        ph, prow = per_class_rows(runs, iou, level)
        pc_note = (f'{iou} AP (%) per class at level {level}; n/a: the run has no such class or no ground '
                   'truth of it there.\n\n')
        md += f'\n## Per class\n\n{pc_note}' + ap_markdown(ph, prow)
        out['per_class_csv'] = osp.join(out_dir, 'per_class.csv')
        atomic_write_text(out['per_class_csv'], csv_table(ph, prow))
    atomic_write_text(out['csv'], csv_table(header, rows))
    plot_comparison(header, rows, out['png'], note if len(note) < 90 else 'mAP per level (%)')
    atomic_write_text(out['markdown'], md)
    out['text'] = md
    return out

