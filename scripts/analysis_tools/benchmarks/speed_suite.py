"""The speed benchmark's models and runs: every model measured in its own process
(``python -m scripts.analysis_tools.benchmarks.speed``, :mod:`.speed`) so that the peak memory of one
does not hide another's; ratios against the stock cascade (b); the devices ``--device`` names."""
import json
import re
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

import torch

from . import worker_env

# (key, label, config) of the models compared by `scripts/analysis_tools/benchmark.py speed`; ratios are against 'b'
SPEED_MODELS = (
    ('a', 'DeepCIS setting 3 (S200-DCNv2, 60 cl.)',
     'configs/deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'),
    ('b', 'stock Cascade Mask R-CNN, same backbone',
     'configs/baselines/cascade-mask-rcnn_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'),
    ('c', 'Mask R-CNN R50-FPN',
     'configs/baselines/mask-rcnn_r50_fpn_3.5k_evican60-cell-nucleus.py'),
    ('d', 'DeepCIS CPU demo (S14-DCNv2)',
     'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'),
)
REFERENCE_KEY = 'b'

def speed_devices(spec: str, gpu_available: Optional[bool] = None) -> List[str]:
    """Devices named by ``--device``: ``auto`` = the CPU, plus ``cuda`` where torch sees a GPU; else a
    comma list such as ``cpu,cuda:1``. ValueError (one line) for an unknown name or a GPU torch does
    not see."""
    gpu = torch.cuda.is_available() if gpu_available is None else gpu_available
    if spec == 'auto':
        return ['cpu'] + (['cuda'] if gpu else [])
    devices = list(dict.fromkeys(d.strip() for d in spec.split(',') if d.strip()))  # each once
    if not devices:
        raise ValueError('--device is empty')
    for d in devices:
        if not (d == 'cpu' or re.fullmatch(r'cuda(:\d+)?', d)):
            raise ValueError(f'--device {d} unknown; use auto, cpu, cuda, cuda:N or a comma list')
        if d.startswith('cuda') and not gpu:
            raise ValueError(f'--device {d} but torch sees no GPU')
    return devices


def _measure_in_subprocess(config: str, phase: str, args: dict, log) -> Dict:
    cmd = [sys.executable, '-m', 'scripts.analysis_tools.benchmarks.speed', config, phase] + \
        [f'--{k}={v}' for k, v in args.items()]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env())
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ['(no output)']
        raise RuntimeError(f'speed benchmark of {config} ({phase}) failed: {tail[0]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_speed(models: Sequence[tuple] = SPEED_MODELS, size: int = 512, warmup: int = 1, repeats: int = 3,
              device: str = 'cpu', batch: int = 2, infer_repeats: Optional[int] = None, dets: int = 100,
              log=print) -> List[Dict]:
    """Measure every model (train then inference, each in a fresh process); one row per model."""
    rows = []
    for key, label, config in models:
        row = dict(key=key, label=label, config=config)
        for phase, n in (('train', repeats), ('infer', infer_repeats or repeats)):
            t0 = time.time()
            res = _measure_in_subprocess(config, phase, dict(size=size, warmup=warmup, repeats=n,
                                                             device=device, batch=batch, dets=dets), log)
            row[phase] = res
            log(f'[{key}] {phase}: median {res["median"]:.3f} s of {[round(t, 3) for t in res["times"]]}, '
                f'peak {res["peak_mib"]:.0f} MiB ({time.time() - t0:.0f} s)')
        rows.append(row)
    ref = next((r for r in rows if r['key'] == REFERENCE_KEY), None)
    for row in rows:
        for phase in ('train', 'infer'):
            row[phase]['ratio'] = row[phase]['median'] / ref[phase]['median'] if ref else None
    return rows
