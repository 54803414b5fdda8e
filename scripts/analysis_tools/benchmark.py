#!/usr/bin/env python
"""DeepCIS against stock MMDetection models, both sides measured in one run.

    python scripts/analysis_tools/benchmark.py speed    [--device auto|cpu|cuda|cpu,cuda] [--size 512] [--repeats 3] [--models a,b,c,d]
    python scripts/analysis_tools/benchmark.py accuracy [--models d,cpu-mask,cpu-cascade]
    python scripts/analysis_tools/benchmark.py predict  [--checkpoint CKPT|random] [--sizes 1024,2048,4096,8192]

speed: per-iteration training time (forward, loss, backward, SGD step on 2 images), per-image
inference time and peak memory at a fixed input size, median of repeated runs after warm-up, for
(a) DeepCIS setting 3, (b) stock Cascade Mask R-CNN with the same backbone (mask head at every stage),
(c) Mask R-CNN R50-FPN, (d) the CPU demo model; ratios against (b). Random weights, the same
synthetic batch for every model; each model measured in its own process. By default on the CPU and,
where torch sees one, also on the GPU (one table per device).

accuracy: the CPU demo model and the CPU-scale stock baselines trained with the same budget on the
same synthetic EVICAN (the `make demo` data), evaluated per difficulty level with and without
image-level culture consensus.

predict: `deepcis predict` (read, tiles through the model, every export written) on dense synthetic
fields of growing size with the demo model (default: the `make demo` checkpoint; `random`: the demo
config with random weights): time, megapixels/s, peak resident memory per size, growth exponents.

Each writes work_dirs/benchmark/{speed,accuracy,predict}.{md,json}; --update-docs puts the speed or
accuracy table in docs/benchmarks.md between its benchmark markers.
"""
import argparse
import datetime
import os
import os.path as osp
import shlex
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)  # the repository root: `scripts.*` importable
os.chdir(ROOT)  # configs and tools/ are repo-relative
DOCS = 'docs/benchmarks.md'  # where --update-docs writes the speed and accuracy tables

from scripts.analysis_tools.benchmarks.accuracy import (ACCURACY_MODELS, COLUMNS, CULTURE_COLUMNS,  # noqa: E402
                                                        EVAL_SUBSETS, PRESETS, run_accuracy)
from scripts.analysis_tools.benchmarks.predict import (DEMO, SIZES, exponents, predict_table,  # noqa: E402
                                                       random_checkpoint, run_predict_bench)
from scripts.analysis_tools.benchmarks.profiling import COMPONENTS  # noqa: E402
from scripts.analysis_tools.benchmarks.speed_suite import SPEED_MODELS, run_speed, speed_devices  # noqa: E402
from deepcis_mm.utils import atomic_write_json, atomic_write_text  # noqa: E402
from scripts.analysis_tools.benchmarks.tables import (accuracy_table, breakdown_table, culture_table,  # noqa: E402
                                                      machine_info, speed_table, update_section)


def _select(models, keys: str, flag: str):
    wanted = [k.strip() for k in keys.split(',') if k.strip()]
    known = {m[0]: m for m in models}
    unknown = [k for k in wanted if k not in known]
    if unknown:
        raise SystemExit(f'benchmark.py: error: {flag} {",".join(unknown)} unknown; choose from {",".join(known)}')
    return [known[k] for k in wanted]


def _log(msg: str) -> None:
    print(msg, flush=True)


def _publish(args, name: str, blocks, rows, extra: str) -> None:
    """``blocks``: (device, table) pairs, each printed under its machine line."""
    command = 'python scripts/analysis_tools/benchmark.py ' + ' '.join(shlex.quote(a) for a in sys.argv[1:])
    stamp = datetime.datetime.now().strftime('%Y-%m-%d')
    text = f'`{command}` ({stamp}; {extra})\n\n'
    for device, table in blocks:
        head = f'#### On {device}\n\n' if len(blocks) > 1 else ''
        text += f'{head}Machine: {machine_info(device)}\n\n{table}\n\n'
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(osp.join(args.out, f'{name}.md'), text)
    atomic_write_json(osp.join(args.out, f'{name}.json'), dict(command=command, rows=rows), indent=1)
    print('\n' + text)
    if args.update_docs:
        update_section(DOCS, name, text)
        print(f'{DOCS}: {name} table updated')


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    s = sub.add_parser('speed', help='training/inference time and peak memory')
    s.add_argument('--models', default=','.join(m[0] for m in SPEED_MODELS),
                   help='subset of: ' + '; '.join(f'{k} = {label}' for k, label, _ in SPEED_MODELS))
    s.add_argument('--device', default='auto',
                   help='auto (the CPU, and the GPU where torch sees one), cpu, cuda[:N] or a comma list')
    s.add_argument('--size', type=int, default=512, help='input side in px (square images)')
    s.add_argument('--batch', type=int, default=2, help='training images per iteration (>= 2: ResNeSt BN)')
    s.add_argument('--warmup', type=int, default=1, help='untimed runs first')
    s.add_argument('--repeats', type=int, default=3, help='timed training iterations (median reported)')
    s.add_argument('--infer-repeats', type=int, default=5, help='timed inferences (median reported)')
    s.add_argument('--dets', type=int, default=100,
                   help='detections per image at inference (score threshold 0), the same for every model')
    a = sub.add_parser('accuracy', help='train the demo model and CPU baselines, one accuracy table')
    a.add_argument('--models', default=','.join(m[0] for m in ACCURACY_MODELS),
                   help='subset of: ' + '; '.join(f'{k} = {label}' for k, label, _ in ACCURACY_MODELS))
    a.add_argument('--work-dir', default='work_dirs/benchmark/accuracy', help='trainings go here')
    a.add_argument('--presets', default='demo',
                   help='data presets, comma-separated: ' + '; '.join(
                       f'{k} = {v["cultures"]} cultures' for k, v in PRESETS.items()))
    a.add_argument('--subsets', default='single-culture',
                   help='eval subsets, comma-separated: ' + ', '.join(n for n, _ in EVAL_SUBSETS))
    a.add_argument('--reuse', action='store_true',
                   help='use a finished training found in --work-dir/<preset>/<model>/ instead of training again')
    r = sub.add_parser('predict', help='deepcis predict on dense synthetic fields of growing size')
    r.add_argument('--checkpoint', default='work_dirs/demo/last_checkpoint',
                   help='demo-config checkpoint, a last_checkpoint file naming one (default: `make demo`\'s), '
                        'or "random" for random weights')
    r.add_argument('--config', default=DEMO)
    r.add_argument('--sizes', default=','.join(str(s) for s in SIZES), help='field sides in px')
    r.add_argument('--score-thr', type=float, default=0.3,
                   help='as deepcis predict (random weights score ~0.1 for every class: use 0.05 for dense output)')
    r.add_argument('--work-dir', default='work_dirs/benchmark/predict', help='fields and outputs go here')
    r.add_argument('--ap-max', type=int, default=2048,
                   help='class-agnostic AP50 against the drawn objects for fields up to this side (0: none)')
    for q in (s, a, r):
        q.add_argument('--out', default='work_dirs/benchmark', help='where the table and JSON go')
        if q is not r:
            q.add_argument('--update-docs', '--update-readme', dest='update_docs', action='store_true',
                           help=f'write the table into {DOCS}')
    args = p.parse_args()

    if args.command == 'predict':
        try:
            sizes = [int(v) for v in args.sizes.split(',') if v.strip()]
        except ValueError:
            sizes = []
        if not sizes or min(sizes) < 256:
            raise SystemExit(f'benchmark.py: error: --sizes {args.sizes}: give sides >= 256 px, e.g. 1024,2048')
        ckpt = args.checkpoint
        if ckpt == 'random':
            os.makedirs(args.work_dir, exist_ok=True)
            ckpt = random_checkpoint(osp.join(args.work_dir, 'random_demo.pth'), args.config)
        elif osp.basename(ckpt) == 'last_checkpoint' and osp.isfile(ckpt):
            ckpt = open(ckpt).read().strip()
        if not osp.isfile(ckpt):
            raise SystemExit(f'benchmark.py: error: {ckpt}: checkpoint not found (run `make demo` or pass '
                             '--checkpoint random)')
        load = ' '.join(f'{v:.1f}' for v in os.getloadavg())
        rows = run_predict_bench(sorted(sizes), args.config, ckpt, args.work_dir,
                                 extra=['--score-thr', str(args.score_thr)], log=_log, ap_max=args.ap_max)
        args.update_docs = False
        extra = (f'checkpoint {ckpt}, score threshold {args.score_thr:g}; one run per size, each in its own '
                 f'process; time = reading + tiles through the model + every export written (model loading excluded); load average before '
                 f'{load}, during each size in the JSON')
        _publish(args, 'predict', [('cpu', predict_table(rows))], dict(rows=rows, exponents=exponents(rows)),
                 extra)
        return

    if args.command == 'speed':
        if args.batch < 2 or min(args.repeats, args.infer_repeats, args.dets) < 1 or args.warmup < 0 \
                or args.size < 64:
            raise SystemExit('benchmark.py: error: need --batch >= 2, --repeats/--infer-repeats/--dets >= 1, '
                             '--warmup >= 0, --size >= 64')
        try:
            devices = speed_devices(args.device)
        except ValueError as e:
            raise SystemExit(f'benchmark.py: error: {e}')
        models = _select(SPEED_MODELS, args.models, '--models')
        rows, blocks = [], []
        for device in devices:  # both sides (DeepCIS and stock) measured on each device in this run
            _log(f'--- {device} ---')
            dev_rows = run_speed(models, args.size, args.warmup, args.repeats, device, args.batch,
                                 args.infer_repeats, args.dets, log=_log)
            rows += [dict(r, device=device) for r in dev_rows]
            blocks.append((device, speed_table(dev_rows, args.size, args.batch)
                           + '\n\nWhere the time goes (median seconds per run: forward of each component, '
                           'the rest of the forward pass, backward + SGD step):\n\n'
                           + breakdown_table(dev_rows, [name for _, name in COMPONENTS])))
        extra = (f'medians of {args.repeats} training iterations and {args.infer_repeats} inferences after '
                 f'{args.warmup} warm-up; random weights; inference at {args.dets} detections per image; '
                 'peak memory = ' + ' / '.join(dict.fromkeys(
                     'max allocated by torch' if d.startswith('cuda') else 'process peak RSS' for d in devices)))
        _publish(args, 'speed', blocks, rows, extra)
    else:
        models = _select(ACCURACY_MODELS, args.models, '--models')
        presets = [p.strip() for p in args.presets.split(',') if p.strip()]
        subsets = [p.strip() for p in args.subsets.split(',') if p.strip()]
        bad = [p for p in presets if p not in PRESETS] + [q for q in subsets if q not in dict(EVAL_SUBSETS)]
        if bad or not presets or not subsets:
            raise SystemExit(f'benchmark.py: error: --presets/--subsets {",".join(bad) or "(empty)"} unknown; choose '
                             f'from {",".join(PRESETS)} / {",".join(dict(EVAL_SUBSETS))}')
        rows = run_accuracy(models, args.work_dir, log=_log, presets=presets, subsets=subsets, reuse=args.reuse)
        extra = ('mAP and culture accuracy in %; 450 iterations x 2 images each, seed 0; data presets '
                 f'{",".join(presets)}, eval subsets {",".join(subsets)}' + (' (--reuse: finished trainings in '
                                                                             'the work dir used as they are)'
                                                                             if args.reuse else ''))
        import torch  # tools/train.py trains on the GPU where there is one: name the machine it used
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        _publish(args, 'accuracy', [(device, culture_table(rows, CULTURE_COLUMNS) + '\n\nPer difficulty level:\n\n'
                                     + accuracy_table(rows, COLUMNS))], rows, extra)


if __name__ == '__main__':
    main()
