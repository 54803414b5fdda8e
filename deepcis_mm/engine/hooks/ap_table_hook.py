"""Write the paper's Table I, per-class AP tables and plots after every evaluation."""
import csv
import io
import json
import os.path as osp
from typing import List, Optional

from mmdet.registry import HOOKS
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.runner import EpochBasedTrainLoop

from ...datasets.evican import LEVELS
from ...utils import atomic_save, atomic_write_text, markdown_table

STATS = (('mAP', 'mAP'), ('mAP_50', 'mAP50'), ('mAP_75', 'mAP75'), ('mAP_s', 'mAPs'), ('mAP_m', 'mAPm'),
         ('mAP_l', 'mAPl'))
LEVEL_ROWS = tuple((str(k), f'Level {k} ({name})') for k, name in LEVELS.items()) + (('all', 'All levels'),)
IOU_NAMES = (('bbox', 'Det.'), ('segm', 'Seg.'))


def fmt(value: Optional[float], scale: float = 100.0) -> str:
    """Percent with two decimals, or n/a."""
    return 'n/a' if value is None else f'{value * scale:.2f}'


def table1_rows(tables: dict) -> List[List[str]]:
    """Table I of the paper: difficulty rows x (mAP, mAP50, mAP75, mAPs, mAPm, mAPl) x (Det., Seg.)."""
    header = ['Difficulty'] + [f'{name} {label}' for iou, name in IOU_NAMES if tables.get(iou)
                               for _, label in STATS]
    rows = [header]
    for lvl, title in LEVEL_ROWS:
        row = [title]
        for iou, _ in IOU_NAMES:
            if tables.get(iou):
                row += [fmt(tables[iou]['levels'][lvl][key]) for key, _ in STATS]
        rows.append(row)
    return rows


def markdown(rows: List[List[str]]) -> str:
    """``rows`` (header first) as a markdown table with a final newline."""
    return markdown_table(rows[0], rows[1:]) + '\n'


def csv_text(rows: List[List]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator='\n').writerows(rows)
    return buf.getvalue()


def max_dets_note(tables: dict) -> str:
    """'up to N detections per image' (the AP's maxDets) for the IoU types in ``tables``."""
    limits = sorted({tables[iou].get('max_dets') for iou, _ in IOU_NAMES if tables.get(iou)} - {None})
    return 'up to ' + '/'.join(map(str, limits)) + ' detections per image' if limits else 'maxDets unknown'


def summary_markdown(tables: dict) -> str:
    """Table I plus class-agnostic AP, per-kind means and culture accuracy per level."""
    parts = [f'## Table I (COCO AP in %, {max_dets_note(tables)})\n', markdown(table1_rows(tables))]
    stock = [(iou, name, tables[iou]['stock_max_dets']) for iou, name in IOU_NAMES
             if tables.get(iou) and tables[iou].get('stock_max_dets')]
    if stock:
        key = lambda n: f'mAP_{n}dets'  # noqa: E731
        rows = [['Difficulty'] + [f'{name} mAP@{n}' for _, name, n in stock]]
        rows += [[title] + [fmt(tables[iou]['levels'][lvl].get(key(n))) for iou, _, n in stock]
                 for lvl, title in LEVEL_ROWS]
        parts += ['\n## mAP at the stock COCO limit: 100 detections per image (pycocotools summarize(), '
                  'most papers)\n',
                  markdown(rows)]
    extra = [['Difficulty'] + [f'agnostic {name} mAP' for iou, name in IOU_NAMES
                               if tables.get(iou) and 'agnostic' in tables[iou]]]
    kinds = [(iou, name, kind) for iou, name in IOU_NAMES if tables.get(iou)
             for kind in tables[iou].get('per_kind', {})]
    extra[0] += [f'{kind} {name} mAP' for _, name, kind in kinds]
    if 'culture' in tables:
        extra[0] += ['culture acc.', 'matched']
    for lvl, title in LEVEL_ROWS:
        row = [title] + [fmt(tables[iou]['agnostic'][lvl]['mAP']) for iou, _ in IOU_NAMES
                         if tables.get(iou) and 'agnostic' in tables[iou]]
        row += [fmt(tables[iou]['per_kind'][kind][lvl]['mAP']) for iou, _, kind in kinds]
        if 'culture' in tables:
            c = tables['culture']['levels'][lvl]
            row += [fmt(c['accuracy']), str(c['n_matched'])]
        extra.append(row)
    if len(extra[0]) > 1:
        parts += ['\n## Class-agnostic AP, per-kind means, culture accuracy (%)\n', markdown(extra)]
    parts.append('\nMeans run over the classes with ground truth at a level; n/a = no ground truth.\n')
    return ''.join(parts)


def per_class_rows(tables: dict) -> List[List]:
    """per_class.csv: one row per (class, level, IoU type); ``category_id`` is the id in the annotation
    file, ``max_dets`` the detection limit of the AP columns."""
    rows = [['class', 'culture', 'kind', 'level', 'iou_type', 'AP', 'AP50', 'AP75', 'APs', 'APm', 'APl',
             'n_images', 'n_instances', 'category_id', 'max_dets']]
    for iou, _ in IOU_NAMES:
        t = tables.get(iou) or {}
        for r in t.get('per_class', []):
            rows.append([r['cls'], r['culture'] or '', r['kind'] or '', r['level'], iou] +
                        ['n/a' if r[k] is None else f'{r[k]:.6f}' for k, _ in STATS] +
                        [r['n_images'], r['n_instances'], r.get('category_id', ''), t.get('max_dets', '')])
    return rows


def plot_per_class(tables: dict, path: str) -> None:
    """Per-class AP bars, one panel per difficulty level (segm if present, else bbox)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    iou = 'segm' if tables.get('segm') else 'bbox'
    classes = tables['classes']
    fig, axes = plt.subplots(4, 1, figsize=(max(6, 0.35 * len(classes) + 2), 10), sharex=True)
    for ax, (lvl, title) in zip(axes, LEVEL_ROWS):
        rows = {r['cls']: r for r in tables[iou]['per_class'] if r['level'] == lvl}
        vals = [rows[c]['mAP'] for c in classes]
        ax.bar(range(len(classes)), [0 if v is None else 100 * v for v in vals], color='tab:blue')
        for x, v in enumerate(vals):
            if v is None:
                ax.text(x, 1, 'n/a', ha='center', va='bottom', fontsize=6, rotation=90, color='gray')
        ax.set(ylabel='AP (%)', ylim=(0, 100),
               title=f"{title}: {iou} AP per class (up to {tables[iou].get('max_dets')} dets/image)")
    axes[-1].set_xticks(range(len(classes)))
    axes[-1].set_xticklabels(classes, rotation=90, fontsize=7)
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=80, format='png'))
    plt.close(fig)


def plot_confusion(culture: dict, path: str) -> None:
    """Culture confusion of matched detections (rows: true culture, columns: predicted)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import numpy as np
    names, mat = culture['cultures'], np.asarray(culture['confusion']['all'])
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(names) + 2),) * 2)
    ax.imshow(mat, cmap='Blues')
    for (i, j), v in np.ndenumerate(mat):
        if v:
            ax.text(j, i, str(v), ha='center', va='center', fontsize=7)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    acc = culture['levels']['all']['accuracy']
    ax.set(xlabel='predicted culture', ylabel='true culture', title=f'culture accuracy {fmt(acc)} %')
    fig.tight_layout()
    atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=80, format='png'))
    plt.close(fig)


def write_ap_tables(tables: dict, metrics: dict, out_dir: str, run: Optional[dict] = None) -> str:
    """Write table1.md/.csv, per_class.csv, metrics.json and the plots into ``out_dir``; return Table I md.

    ``run`` (config name, iteration, checkpoint, ...) goes into metrics.json for ``deepcis compare``."""
    text = summary_markdown(tables)
    atomic_write_text(osp.join(out_dir, 'table1.md'), text)
    atomic_write_text(osp.join(out_dir, 'table1.csv'), csv_text(table1_rows(tables)))
    atomic_write_text(osp.join(out_dir, 'per_class.csv'), csv_text(per_class_rows(tables)))
    clean = {k: (None if isinstance(v, float) and v != v else v) for k, v in metrics.items()}
    atomic_write_text(osp.join(out_dir, 'metrics.json'),
                      json.dumps(dict(run=run or {}, metrics=clean, tables=tables), indent=1))
    if tables.get('segm') or tables.get('bbox'):
        plot_per_class(tables, osp.join(out_dir, 'per_class_ap.png'))
    if tables.get('culture') and tables['culture']['cultures']:
        plot_confusion(tables['culture'], osp.join(out_dir, 'culture_confusion.png'))
    return text


@HOOKS.register_module()
class APTableHook(Hook):
    """After every val/test evaluation, write the tables of each :class:`DifficultyCocoMetric` to
    ``<work_dir>/ap_tables/<iter_N | epoch_N | test_<checkpoint>_<timestamp>>/`` and log Table I."""

    priority = 'LOW'

    def __init__(self, out_dir: str = 'ap_tables'):
        self.out_dir = out_dir
        self._ckpt_meta: dict = {}

    def _tables(self, evaluator):
        return [m for m in getattr(evaluator, 'metrics', []) if getattr(m, 'last_tables', None)]

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # a test run starts at iteration 0: the trained iteration is in the loaded checkpoint
        meta = checkpoint.get('meta', {}) if isinstance(checkpoint, dict) else {}
        self._ckpt_meta = {k: meta.get(k) for k in ('iter', 'epoch') if k in meta}

    def _run_info(self, runner, mode: str, metric) -> dict:
        cfg = getattr(runner, 'cfg', None)
        config = getattr(cfg, 'filename', None) if cfg is not None else None
        info = dict(mode=mode, config=config, config_name=osp.splitext(osp.basename(config))[0] if config else None,
                    work_dir=osp.abspath(runner.work_dir), timestamp=getattr(runner, 'timestamp', None),
                    ann_file=getattr(metric, 'ann_file', None))
        if mode == 'test':
            info['checkpoint'] = str(cfg.get('load_from')) if cfg is not None and cfg.get('load_from') else None
            info['iteration'], info['epoch'] = self._ckpt_meta.get('iter'), self._ckpt_meta.get('epoch')
        else:
            info['iteration'], info['epoch'] = getattr(runner, 'iter', None), getattr(runner, 'epoch', None)
        return info

    def _write(self, runner, evaluator, tag: str, metrics: Optional[dict], mode: str) -> None:
        for n, metric in enumerate(self._tables(evaluator)):
            folder = osp.join(runner.work_dir, self.out_dir, tag + (f'_{n}' if n else ''))
            text = write_ap_tables(metric.last_tables, metrics or {}, folder, self._run_info(runner, mode, metric))
            runner.logger.info(f'AP tables written to {folder}\n{text}')

    @master_only
    def after_val_epoch(self, runner, metrics=None) -> None:
        by_epoch = isinstance(getattr(runner, '_train_loop', None), EpochBasedTrainLoop)
        tag = f'epoch_{runner.epoch}' if by_epoch else f'iter_{runner.iter}'
        self._write(runner, runner.val_loop.evaluator, tag, metrics, 'val')

    @master_only
    def after_test_epoch(self, runner, metrics=None) -> None:
        ckpt = osp.splitext(osp.basename(str(runner.cfg.get('load_from') or 'model')))[0]
        self._write(runner, runner.test_loop.evaluator, f'test_{ckpt}_{runner.timestamp}', metrics, 'test')
