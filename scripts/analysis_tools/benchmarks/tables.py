"""Markdown tables of the benchmarks, the machine they ran on, and their sections in docs/benchmarks.md."""
import math
import os
import platform
import re
from typing import Dict, List, Optional

from deepcis_mm.utils import atomic_write_text, markdown_table


def machine_info(device: str = 'cpu') -> str:
    """One line: CPU model and cores (or GPU name), memory, torch and mmcv versions."""
    import mmcv
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    try:
        mem = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2 ** 30
        mem_s = f', {mem:.0f} GiB RAM'
    except (ValueError, OSError, AttributeError):
        mem_s = ''
    where = f'{cpu}, {len(os.sched_getaffinity(0))} cores{mem_s}'
    if device.startswith('cuda'):
        where = f'{torch.cuda.get_device_name(device)} (host: {where})'
    return f'{where}; torch {torch.__version__}, mmcv {mmcv.__version__}, {torch.get_num_threads()} threads'


def _num(v: Optional[float], fmt: str = '{:.1f}') -> str:
    return 'n/a' if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def speed_table(rows: List[Dict], size: int, batch: int) -> str:
    """Markdown table of :func:`run_speed` rows (medians; ratios against model (b))."""
    header = ['model', 'params (M)', f'train s/iter ({batch}×{size}²)', 'train × (b)', 'train TFLOP',
              'train peak MiB', f'infer s/img ({size}²)', 'infer × (b)', 'infer TFLOP', 'infer peak MiB', 'dets/img']
    lines = []
    for r in rows:
        t, i = r['train'], r['infer']
        tera = [None if x.get('gflop') is None else x['gflop'] / 1000 for x in (t, i)]
        lines.append([f'({r["key"]}) {r["label"]}', f'{t["params_m"]:.1f}', f'{t["median"]:.3g}',
                      _num(t["ratio"], "{:.2f}"), _num(tera[0], "{:.3g}"), f'{t["peak_mib"]:.0f}',
                      f'{i["median"]:.3g}', _num(i["ratio"], "{:.2f}"), _num(tera[1], "{:.3g}"),
                      f'{i["peak_mib"]:.0f}', _num(i["dets"], "{:.0f}")])
    return markdown_table(header, lines)


def breakdown_table(rows: List[Dict], components: List[str]) -> str:
    """Markdown table: median forward seconds per component of every model and phase. 'other fwd':
    the rest of the forward pass (anchors, targets, sampling, losses in training; proposal and
    detection post-processing, mask pasting in inference); 'bwd + step': backward and SGD step."""
    lines = []
    for r in rows:
        for phase in ('train', 'infer'):
            res = r[phase]
            parts = [res['parts'].get(c) for c in components]
            forward = res['parts'].get('forward', res['median'])
            other = forward - sum(v for v in parts if v)
            backward = '–' if phase == 'infer' else f'{res["median"] - forward:.3g}'
            lines.append([f'({r["key"]})', phase, f'{res["median"]:.3g}'] +
                         ['–' if v is None else f'{v:.3g}' for v in parts] + [f'{other:.3g}', backward])
    return markdown_table(['model', 'phase', 'total s', *components, 'other fwd', 'bwd + step'], lines)


ACCURACY_HEADERS = ('bbox L1', 'bbox L2', 'bbox L3', 'bbox all', 'segm L1', 'segm L2', 'segm L3',
                    'segm all', 'agn. bbox', 'agn. segm', 'culture acc.')


def accuracy_table(rows: List[Dict], columns: List[str]) -> str:
    """Markdown table of :func:`run_accuracy` rows: mAP (%) per level, class-agnostic mAP, culture
    accuracy (%), each model as predicted and with each post-hoc scoring."""
    lines = []
    for r in rows:
        vals = [r['metrics'].get(c) for c in columns]
        where = f' ({r["preset"]}, {r["subset"]})' if 'preset' in r else ''
        lines.append([r['label'] + where, r.get('scoring', r['consensus'])] +
                     [_num(None if v is None else 100 * v) for v in vals])
    return markdown_table(['model', 'scoring', *ACCURACY_HEADERS], lines)


CULTURE_HEADERS = ['bbox mAP', 'segm mAP', 'segm mAP class-agnostic', 'segm culture-aware / agnostic',
                   'culture acc. (matched)', 'image culture acc.']


def culture_table(rows: List[Dict], columns: List[str]) -> str:
    """Markdown table of :func:`run_accuracy` rows by data preset and eval subset: culture-aware and
    class-agnostic segm mAP, their ratio, culture accuracy of matched detections and per image (%;
    the ratio as a fraction)."""
    lines = ['| data | eval | model | scoring | ' + ' | '.join(CULTURE_HEADERS[:len(columns)]) + ' |',
             '|' + '---|' * (4 + len(columns))]
    for r in rows:
        vals = [r['metrics'].get(c) for c in columns]
        lines.append(f'| {r.get("preset", "demo")} | {r.get("subset", "single-culture")} | {r["label"]} | '
                     f'{r.get("scoring", r["consensus"])} | ' +
                     ' | '.join(_num(v, '{:.2f}') if c == 'segm_ratio' else _num(None if v is None else 100 * v)
                                for c, v in zip(columns, vals)) + ' |')
    return '\n'.join(lines)


def update_section(path: str, section: str, text: str) -> None:
    """Replace what lies between ``<!-- benchmark:{section}:start -->`` and ``...:end -->`` in the
    markdown file ``path`` (atomically); the markers must exist."""
    with open(path) as f:
        readme = f.read()
    start, end = f'<!-- benchmark:{section}:start -->', f'<!-- benchmark:{section}:end -->'
    pattern = re.compile(re.escape(start) + '.*?' + re.escape(end), re.S)
    if not pattern.search(readme):
        raise ValueError(f'{path}: markers {start} ... {end} not found')
    atomic_write_text(path, pattern.sub(lambda _: f'{start}\n{text.strip()}\n{end}', readme, count=1))
