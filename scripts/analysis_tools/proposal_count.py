#!/usr/bin/env python
"""Test-time RPN proposal count of the paper model: inference speed and demo-scale accuracy, one run.

    python scripts/analysis_tools/proposal_count.py [--counts 3000,1000,300] [--checkpoint CKPT]

speed: DeepCIS setting 3 (model (a) of `benchmark.py speed`) and the stock Cascade Mask R-CNN on the
same backbone (model (b)) infer one synthetic 512² image at each proposal count (random weights, score
threshold 0 and 100 detections per image for both, as `benchmark.py speed`); (a) also with conv+BN
fused (mmcv ``fuse_conv_bn``). Each measurement runs in its own process. Wall and CPU seconds (all
threads) per image are reported: CPU time is the steadier number on a shared machine.

accuracy: the trained demo model (default: `make demo`'s checkpoint) tested on the demo eval split at
each count with the authors' other test settings (6,000 pre-NMS proposals per level, up to 3,000
detections per image): bbox/segm mAP per difficulty level (level 2 = dense), class-agnostic segm mAP.

Writes work_dirs/benchmark/proposals.{md,json}.
"""
import argparse
import datetime
import glob
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from deepcis_mm.utils import atomic_write_json, atomic_write_text  # noqa: E402
from scripts.analysis_tools.benchmarks import worker_env  # noqa: E402
from scripts.analysis_tools.benchmarks.tables import machine_info  # noqa: E402

PAPER = 'configs/deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'
STOCK = 'configs/baselines/cascade-mask-rcnn_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'
DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'
SPEED_WORKER = 'scripts.analysis_tools.benchmarks.speed'  # python -m worker: one config, one phase, one JSON line


def speed_run(config: str, proposals: int, fuse: bool, args) -> dict:
    """One inference measurement in a fresh process."""
    cmd = [sys.executable, '-m', SPEED_WORKER, config, 'infer', f'--size={args.size}',
           f'--warmup={args.warmup}', f'--repeats={args.infer_repeats}', f'--dets={args.dets}',
           f'--proposals={proposals}'] + (['--fuse-conv-bn'] if fuse else [])
    proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=worker_env())
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ['(no output)'])[-1]
        raise SystemExit(f'proposal_count.py: speed of {config} at {proposals} proposals failed: {tail}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def accuracy_run(checkpoint: str, proposals: int, work_dir: str) -> dict:
    """tools/test.py on the demo eval split at ``proposals``; the metrics of that run."""
    out = osp.join(work_dir, f'test_{proposals}')
    opts = [f'model.test_cfg.rpn.nms_pre=6000', f'model.test_cfg.rpn.max_per_img={proposals}',
            'model.test_cfg.rcnn.max_per_img=3000']
    cmd = [sys.executable, 'tools/test.py', DEMO, checkpoint, '--work-dir', out, '--cfg-options'] + opts
    t0 = time.time()
    with open(osp.join(work_dir, f'test_{proposals}.log'), 'w') as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f'proposal_count.py: test at {proposals} proposals failed (exit {rc}); '
                         f'see {log.name}')
    runs = sorted(glob.glob(osp.join(out, 'ap_tables', 'test_*', 'metrics.json')), key=osp.getmtime)
    metrics = json.load(open(runs[-1]))['metrics']
    return dict(proposals=proposals, seconds=time.time() - t0, metrics=metrics)


def _f(v, fmt='{:.2f}'):
    return 'n/a' if v is None else fmt.format(v)


def speed_table(rows: list) -> str:
    ref = next((r for r in rows if r['model'] == 'b' and r['proposals'] == 3000 and not r['fused']), None)
    lines = ['| model | proposals | conv+BN fused | infer s/img | CPU s/img | box heads s | × (b) at 3000 '
             '| × (b) at same count | peak MiB |', '|' + '---|' * 9]
    for r in rows:
        same = next((s for s in rows if s['model'] == 'b' and s['proposals'] == r['proposals']
                     and not s['fused']), None)
        lines.append(
            f'| ({r["model"]}) | {r["proposals"]} | {"yes" if r["fused"] else "no"} | {r["median"]:.3g} | '
            f'{_f(r.get("cpu_median"), "{:.3g}")} | {r["parts"].get("box heads", 0):.3g} | '
            f'{_f(r["median"] / ref["median"] if ref else None)} | '
            f'{_f(r["median"] / same["median"] if same else None)} | {r["peak_mib"]:.0f} |')
    return '\n'.join(lines)


def accuracy_table(rows: list) -> str:
    base = next((r for r in rows if r['proposals'] == max(x['proposals'] for x in rows)), None)
    lines = ['| proposals | bbox mAP | segm mAP | segm L1 | segm L2 (dense) | segm L3 | class-agn. segm '
             '| Δ segm vs ' + str(base['proposals']) + ' | Δ L2 segm | test s (30 images) |',
             '|' + '---|' * 10]
    for r in rows:
        m, b = r['metrics'], base['metrics']
        lines.append(
            f'| {r["proposals"]} | {m["coco/bbox_mAP"] * 100:.2f} | {m["coco/segm_mAP"] * 100:.2f} | '
            f'{m["coco/segm_L1_mAP"] * 100:.2f} | {m["coco/segm_L2_mAP"] * 100:.2f} | '
            f'{m["coco/segm_L3_mAP"] * 100:.2f} | {m["coco/segm_agnostic_mAP"] * 100:.2f} | '
            f'{(m["coco/segm_mAP"] - b["coco/segm_mAP"]) * 100:+.2f} | '
            f'{(m["coco/segm_L2_mAP"] - b["coco/segm_L2_mAP"]) * 100:+.2f} | {r["seconds"]:.0f} |')
    return '\n'.join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--counts', default='3000,1000,300', help='test-time RPN proposals per image')
    p.add_argument('--fused-at', type=int, default=None,
                   help='also measure (a) with conv+BN fused at this count (default: the smallest count)')
    p.add_argument('--checkpoint', default='work_dirs/demo/last_checkpoint',
                   help='demo-config checkpoint or a last_checkpoint file naming one (`make demo` writes it)')
    p.add_argument('--size', type=int, default=512)
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--infer-repeats', type=int, default=2)
    p.add_argument('--dets', type=int, default=100)
    p.add_argument('--skip', choices=('speed', 'accuracy'), help='leave one part out')
    p.add_argument('--work-dir', default='work_dirs/benchmark/proposals')
    p.add_argument('--out', default='work_dirs/benchmark')
    args = p.parse_args()
    try:
        counts = [int(c) for c in args.counts.split(',') if c.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise SystemExit(f'proposal_count.py: error: --counts {args.counts}: give positive integers, e.g. 3000,1000,300')
    counts = sorted(set(counts), reverse=True)
    os.chdir(ROOT)
    os.makedirs(args.work_dir, exist_ok=True)
    speed_rows, acc_rows = [], []
    if args.skip != 'accuracy':
        ckpt = args.checkpoint
        if osp.basename(ckpt) == 'last_checkpoint' and osp.isfile(ckpt):
            ckpt = open(ckpt).read().strip()
        if not osp.isfile(ckpt):
            raise SystemExit(f'proposal_count.py: error: {ckpt}: checkpoint not found (run `make demo`, '
                             'or --skip accuracy)')
    if args.skip != 'speed':
        fused_at = args.fused_at or counts[-1]
        plan = [('a', PAPER, n, False) for n in counts] + [('a', PAPER, fused_at, True)] + \
            [('b', STOCK, n, False) for n in counts]
        for key, config, n, fuse in plan:
            t0 = time.time()
            res = speed_run(config, n, fuse, args)
            speed_rows.append(dict(res, model=key, config=config, proposals=n, fused=fuse))
            print(f'speed ({key}) {n} proposals{" fused" if fuse else ""}: {res["median"]:.2f} s/img '
                  f'(CPU {res.get("cpu_median", 0):.2f} s; {time.time() - t0:.0f} s)', flush=True)
    if args.skip != 'accuracy':
        for n in counts:
            res = accuracy_run(ckpt, n, args.work_dir)
            acc_rows.append(res)
            print(f'accuracy at {n} proposals: segm mAP {res["metrics"]["coco/segm_mAP"] * 100:.2f} '
                  f'({res["seconds"]:.0f} s)', flush=True)

    command = 'python scripts/analysis_tools/proposal_count.py ' + ' '.join(shlex.quote(a) for a in sys.argv[1:])
    load = ' '.join(f'{v:.1f}' for v in os.getloadavg())
    text = (f'`{command}` ({datetime.date.today()}; load average at the end {load})\n\n'
            f'Machine: {machine_info("cpu")}\n\n')
    if speed_rows:
        text += ('Inference speed (random weights, one 512² image, score threshold 0 and '
                 f'{args.dets} detections per image for both models, medians of {args.infer_repeats} after '
                 f'{args.warmup} warm-up; (a) DeepCIS setting 3, (b) stock Cascade Mask R-CNN, same backbone):'
                 f'\n\n{speed_table(speed_rows)}\n\n')
    if acc_rows:
        text += ('Accuracy of the demo model (`make demo` checkpoint) on the demo eval split, AP in %, '
                 '6,000 pre-NMS proposals per level and up to 3,000 detections per image:\n\n'
                 f'{accuracy_table(acc_rows)}\n')
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(osp.join(args.out, 'proposals.md'), text)
    atomic_write_json(osp.join(args.out, 'proposals.json'),
                      dict(command=command, speed=speed_rows, accuracy=acc_rows), indent=1)
    print('\n' + text)


if __name__ == '__main__':
    main()
