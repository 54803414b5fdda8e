"""``deepcis`` command line: ``deepcis predict INPUT --config C --checkpoint K [--out DIR] ...``.

One parser, one function per subcommand that calls package API (:mod:`deepcis_mm.apis`,
:mod:`deepcis_mm.evaluation.compare_runs`) and turns its errors into exit codes.
"""
import argparse
import os.path as osp
import signal
import sys
import threading


def predict(args) -> int:
    """``deepcis predict``: :func:`~deepcis_mm.apis.predict_to_folder` with the parsed arguments.

    Exit 0: every image predicted and written; 2: an input error (nothing written); 3: --skip-bad
    skipped unreadable images (listed; the others written).
    """
    from .apis import InputError, predict_to_folder
    # `kill` (SIGTERM) ends the run like Ctrl-C: the staging folder is removed, --out stays as it was
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143)) \
        if threading.current_thread() is threading.main_thread() else None
    try:
        writer = predict_to_folder(
            args.input, args.config, args.checkpoint, args.out, overwrite=args.overwrite, gt=args.gt,
            skip_bad=args.skip_bad, quiet=args.quiet, device=args.device, score_thr=args.score_thr,
            consensus=args.consensus, tile_size=args.tile_size, tile_overlap=args.tile_overlap,
            scale=args.scale, batch_size=args.batch_size, fuse_conv_bn=args.fuse_conv_bn)
    except InputError as e:
        print(f'deepcis predict: error: {e}', file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    done = len(writer.images)
    print(f'deepcis predict: {writer.n_instances} instances in {done} image(s) -> {args.out} '
          f'(overlays/, labels/, geojson/, instances.csv, coco_results.json, coco_instances.json)')
    if writer.skipped:
        print(f'deepcis predict: skipped {len(writer.skipped)} unreadable image(s) (listed in '
              f'{osp.join(args.out, "skipped.txt")}):', file=sys.stderr)
        for p, _ in writer.skipped:
            print(f'  {p}', file=sys.stderr)
        return 3
    return 0


def compare(args) -> int:
    """``deepcis compare``: :func:`~deepcis_mm.evaluation.compare_runs.compare_runs` with the parsed
    arguments; print the table. Exit 0: written; 2: bad input (one-line error)."""
    from .evaluation.compare_runs import CompareError, compare_runs
    try:
        out = compare_runs(args.runs, args.out, args.per_class, args.select, args.iou, args.level)
    except CompareError as e:
        print(f'deepcis compare: error: {e}', file=sys.stderr)
        return 2
    print(out['text'])
    print('deepcis compare: wrote ' + ', '.join(v for k, v in out.items() if k not in ('text',)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='deepcis', description='DeepCIS tools')
    sub = p.add_subparsers(dest='command', required=True)
    pr = sub.add_parser('predict', help='segment cells and nuclei and name their culture',
                        description='Predict images; write overlays, label images, GeoJSON, CSV and COCO.')
    pr.add_argument('input', help='an image, a folder, or a glob pattern (jpg/png/tif, 8/16 bit, gray/RGB)')
    pr.add_argument('--config', required=True, help='model config (e.g. configs/demo/...py)')
    pr.add_argument('--checkpoint', required=True, help='trained checkpoint (.pth)')
    pr.add_argument('--out', default='work_dirs/predict',
                    help='output folder; written only when the run succeeds (must not exist or be empty)')
    pr.add_argument('--overwrite', action='store_true',
                    help='replace an earlier predict output folder (none of its files stay)')
    pr.add_argument('--skip-bad', action='store_true',
                    help='skip unreadable/truncated images (listed in skipped.txt; exit status 3)')
    pr.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    pr.add_argument('--scale', type=float, default=1.0,
                    help='model-input pixels per image pixel: 1 = images at the magnification the model '
                         'was trained on; 0.5 for twice that magnification, 2 for half')
    pr.add_argument('--tile-size', type=int, default=None,
                    help='tile side in model-input px (default: the config\'s test input side, at most 1024)')
    pr.add_argument('--tile-overlap', type=int, default=None,
                    help='overlap of neighbouring tiles in model-input px (default: a quarter tile); '
                         'objects larger than this may be cut')
    pr.add_argument('--batch-size', type=int, default=1, help='tiles per forward pass')
    pr.add_argument('--no-fuse-conv-bn', dest='fuse_conv_bn', action='store_false',
                    help='keep BN layers apart from their convs (default: folded, mmcv fuse_conv_bn)')
    pr.add_argument('--score-thr', type=float, default=0.3)
    pr.add_argument('--consensus', action='store_true',
                    help='image-level culture consensus (one culture per image; not for co-cultures)')
    pr.add_argument('--gt', help='ground-truth COCO file: COCO exports use its image and category ids '
                                 '(matched by file and class name); per-image AP50 in the overlay caption')
    pr.add_argument('--quiet', action='store_true', help='no progress bar')
    cp = sub.add_parser('compare', help='put evaluated runs side by side (markdown, CSV, bar plot)',
                        description='Compare runs from their ap_tables (see docs/evaluation_and_comparison.md).')
    cp.add_argument('runs', nargs='+',
                    help='work_dirs, ap_tables folders, table folders (with metrics.json) or glob patterns '
                         "(quote them: 'work_dirs/ablation/*')")
    cp.add_argument('--out', default='work_dirs/compare', help='folder for compare.md/.csv/.png')
    cp.add_argument('--per-class', action='store_true', help='also a per-class AP table (per_class.csv)')
    cp.add_argument('--iou', default='segm', help='IoU type of the per-class table: bbox or segm')
    cp.add_argument('--level', default='all', help='difficulty level of the per-class table: 1, 2, 3 or all')
    cp.add_argument('--select', default='auto', help='in a work_dir: auto (newest test table, else the last '
                    'val table), test or val')
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == 'predict':
        return predict(args)
    if args.command == 'compare':
        return compare(args)
    return 1


if __name__ == '__main__':
    sys.exit(main())
