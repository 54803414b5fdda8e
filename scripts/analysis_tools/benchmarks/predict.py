"""``scripts/analysis_tools/benchmark.py predict``: ``deepcis predict`` on dense synthetic fields of growing size.

A field of S x S px is a mosaic of 256 px synthetic EVICAN fields at the dense level 2 (cultures in
turn), written as one grayscale PNG. Each size is predicted in its own process (``python -m
scripts.analysis_tools.benchmarks.predict``, the same code path as ``deepcis predict``: read, tiles through the
model, every export written and committed), so that the peak resident memory (``ru_maxrss`` of the
worker) is that size's own. Time is measured inside the worker around reading, predicting and writing (model
loading excluded); growth exponents are least-squares slopes of log(time) and log(peak RSS) over
log(pixels).
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from deepcis_mm.utils import markdown_table

from . import worker_env

SIZES = (1024, 2048, 4096, 8192)
DEMO = 'configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py'
FIELD = 256


def make_field(size: int, n_cultures: int = 4, seed: int = 0, with_objects: bool = False):
    """(uint8 gray S x S mosaic of dense synthetic fields, number of cell + nucleus objects in it);
    ``with_objects``: also the objects as (polygon in field coordinates, label) with labels
    2 * culture + (0 cell, 1 nucleus), as in the demo's class order."""
    from scripts.dataset_converters.synthetic_evican import culture_morphology, render_image
    img = np.zeros((size, size), np.uint8)
    objects_out = []
    n_objects = 0
    k = 0
    for y in range(0, size, FIELD):
        for x in range(0, size, FIELD):
            h, w = min(FIELD, size - y), min(FIELD, size - x)
            rng = np.random.default_rng((seed, y, x))
            tile, objects = render_image(rng, h, w, culture_morphology(k % n_cultures), level=2)
            img[y:y + h, x:x + w] = tile
            n_objects += sum(1 + (nuc is not None) for _, nuc, _ in objects)
            if with_objects:
                for cell, nuc, _ in objects:
                    objects_out.append((cell + (x, y), 2 * (k % n_cultures)))
                    if nuc is not None:
                        objects_out.append((nuc + (x, y), 2 * (k % n_cultures) + 1))
            k += 1
    return (img, n_objects, objects_out) if with_objects else (img, n_objects)


def class_agnostic_ap50(objects, size: int, results_file: str) -> float:
    """Class-agnostic mask AP50 (%) of a predict run's ``coco_results.json`` on one field against
    the objects drawn in it (pycocotools, up to 100,000 detections)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    anns = [dict(id=i + 1, image_id=1, category_id=1, iscrowd=0, segmentation=[poly.ravel().tolist()],
                 area=float(_polygon_area(poly)), bbox=[*poly.min(0).tolist(), *(poly.max(0) - poly.min(0)).tolist()])
            for i, (poly, _) in enumerate(objects)]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dict(images=[dict(id=1, width=size, height=size, file_name='field.png')],
                          categories=[dict(id=1, name='object')], annotations=anns)
        gt.createIndex()
        with open(results_file) as f:
            dets = [dict(d, category_id=1) for d in json.load(f)]
        if not dets:
            return 0.0
        E = COCOeval(gt, gt.loadRes(dets), 'segm')
        E.params.useCats = 0
        E.params.maxDets = [100, 1000, 100000]
        E.evaluate()
        E.accumulate()
    prec = E.eval['precision'][0, :, 0, 0, -1]
    return 100 * float(prec[prec > -1].mean())


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def random_checkpoint(path: str, config: str = DEMO, n_cultures: int = 4) -> str:
    """The config's model with random weights, saved with class names like tools/train.py saves."""
    import torch
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import deepcis_mm  # noqa: F401
    from scripts.dataset_converters.synthetic_evican import CULTURES
    from deepcis_mm.engine.cpu_fallback import apply_cpu_fallback
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(config)
    apply_cpu_fallback(cfg, force=True)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    classes = [f'{c} {k}' for c in CULTURES[:n_cultures] for k in ('cell', 'nucleus')]
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=classes))), path)
    return path


def growth_exponent(pixels: Sequence[float], values: Sequence[float]) -> Optional[float]:
    """Slope of log(value) over log(pixels) (least squares); None with fewer than two sizes."""
    if len(pixels) < 2:
        return None
    slope, _ = np.polyfit(np.log(np.asarray(pixels, float)), np.log(np.asarray(values, float)), 1)
    return float(slope)


def _run_worker(image: str, config: str, checkpoint: str, out: str, extra: Sequence[str]) -> Dict:
    cmd = [sys.executable, '-m', 'scripts.analysis_tools.benchmarks.predict', image, config, checkpoint, out, *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=worker_env())
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ['(no output)']
        raise RuntimeError(f'predict benchmark on {image} failed: {tail[0]}')
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res['process_s'] = wall
    return res


def run_predict_bench(sizes: Sequence[int], config: str, checkpoint: str, work_dir: str,
                      extra: Sequence[str] = (), log=print, ap_max: int = 0) -> List[Dict]:
    """One row per field size: pixels, tiles, time (total, model, reading + writing), MP/s, peak RSS,
    instances written and objects drawn; class-agnostic AP50 for fields up to ``ap_max`` px."""
    import cv2
    os.makedirs(work_dir, exist_ok=True)
    rows = []
    for size in sizes:
        t0 = time.time()
        img, n_objects, objects = make_field(size, with_objects=True) if size <= ap_max \
            else (*make_field(size), None)
        image = osp.join(work_dir, f'field_{size}.png')
        cv2.imwrite(image, img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        del img
        log(f'[{size}] field with {n_objects} objects written ({time.time() - t0:.0f} s); predicting ...')
        res = _run_worker(image, config, checkpoint, osp.join(work_dir, f'out_{size}'), extra)
        mp = size * size / 1e6
        row = dict(size=size, megapixels=mp, objects=n_objects, tiles=res['tiles'], instances=res['instances'],
                   total_s=res['total_s'], cpu_s=res['cpu_s'], predict_s=res['predict_s'],
                   read_write_s=res['read_s'] + res['write_s'],
                   mp_per_s=mp / res['total_s'], peak_rss_gib=res['peak_rss_kib'] / 2 ** 20,
                   load_avg=res['load_avg'], ap50=None)
        if objects is not None:
            row['ap50'] = class_agnostic_ap50(objects, size, osp.join(work_dir, f'out_{size}', 'coco_results.json'))
        log(f'[{size}] {row["total_s"]:.1f} s, CPU {row["cpu_s"]:.1f} s ({row["mp_per_s"]:.3f} MP/s), '
            f'peak RSS {row["peak_rss_gib"]:.2f} GiB, '
            f'{row["instances"]} instances of {n_objects} objects, {row["tiles"]} tiles, load {row["load_avg"]}'
            + ('' if row['ap50'] is None else f', class-agnostic AP50 {row["ap50"]:.1f} %'))
        rows.append(row)
        os.remove(image)
    return rows


def exponents(rows: List[Dict]) -> Dict[str, Optional[float]]:
    px = [r['megapixels'] for r in rows]
    return dict(time=growth_exponent(px, [r['total_s'] for r in rows]),
                cpu=growth_exponent(px, [r['cpu_s'] for r in rows]),
                rss=growth_exponent(px, [r['peak_rss_gib'] for r in rows]),
                time_last=growth_exponent(px[-2:], [r['total_s'] for r in rows[-2:]]),
                cpu_last=growth_exponent(px[-2:], [r['cpu_s'] for r in rows[-2:]]),
                rss_last=growth_exponent(px[-2:], [r['peak_rss_gib'] for r in rows[-2:]]))


def predict_table(rows: List[Dict]) -> str:
    """Markdown table of :func:`run_predict_bench` rows, with the growth exponents under it."""
    header = ['field (px)', 'MP', 'tiles', 'objects drawn', 'instances written', 'AP50 (%)', 'time (s)',
              'of it model (s)', 'CPU time (s)', 'MP/s', 'peak RSS (GiB)']
    cells = []
    for r in rows:
        ap = 'n/a' if r.get('ap50') is None else f'{r["ap50"]:.1f}'
        cells.append([f'{r["size"]}²', f'{r["megapixels"]:.1f}', r['tiles'], r['objects'], r['instances'], ap,
                      f'{r["total_s"]:.1f}', f'{r["predict_s"]:.1f}', f'{r["cpu_s"]:.1f}', f'{r["mp_per_s"]:.3f}',
                      f'{r["peak_rss_gib"]:.2f}'])
    lines = [markdown_table(header, cells)]
    e = exponents(rows)
    fmt = (lambda v: 'n/a' if v is None else f'{v:.2f}')
    lines.append('')
    lines.append('AP50: class-agnostic mask AP at IoU 0.5 against the objects drawn in the field. Time: wall clock; '
                 'CPU time: user + system seconds of the process over the same span (less sensitive to other '
                 'load on the machine).')
    lines.append('')
    lines.append(f'Growth exponents over pixels (log-log fit over all sizes; between the two largest): '
                 f'time {fmt(e["time"])} ({fmt(e["time_last"])}), CPU time {fmt(e["cpu"])} ({fmt(e["cpu_last"])}), '
                 f'peak RSS {fmt(e["rss"])} ({fmt(e["rss_last"])}).')
    return '\n'.join(lines)


def main(argv=None) -> None:
    """Worker: predict one image as ``deepcis predict`` does; print one JSON line of measurements."""
    import resource
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('image')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('out')
    p.add_argument('--score-thr', type=float, default=0.3)
    p.add_argument('--tile-size', type=int)
    p.add_argument('--tile-overlap', type=int)
    p.add_argument('--batch-size', type=int, default=1)
    a = p.parse_args(argv)
    from mmdet.utils import register_all_modules

    import deepcis_mm  # noqa: F401
    from deepcis_mm.apis import (OutputFolder, PredictionWriter, Predictor, image_size, image_tiles, predict_files,
                                 tile_px)
    register_all_modules(init_default_scope=True)
    predictor = Predictor(a.config, a.checkpoint, score_thr=a.score_thr, tile_size=a.tile_size,
                          tile_overlap=a.tile_overlap, batch_size=a.batch_size)
    writer = PredictionWriter(OutputFolder(a.out, overwrite=True), predictor.classes, predictor.cultures,
                              predictor.kinds, predictor.palette)
    timings: Dict[str, float] = {}
    c0, t0 = time.process_time(), time.perf_counter()
    predict_files(predictor, [a.image], writer, quiet=True, timings=timings)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    res = dict(total_s=total, cpu_s=cpu, predict_s=timings['predict'], read_s=timings['read'],
               write_s=timings['write'],
               tiles=len(image_tiles(*image_size(a.image), *tile_px(predictor.tile_size, predictor.tile_overlap,
                                                                    predictor.scale))),
               instances=writer.n_instances,
               peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               load_avg=' '.join(f'{v:.1f}' for v in os.getloadavg()))
    sys.stdout.write(json.dumps(res) + '\n')


if __name__ == '__main__':
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    main()
