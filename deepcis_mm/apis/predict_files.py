"""A prediction run, in one direction: list the inputs -> read each image (:mod:`.reading`) -> the
model on its tiles (:class:`~.predictor.Predictor`) -> every output written (:mod:`.exports`) -> the
output folder committed. ``deepcis predict`` (:mod:`deepcis_mm.cli`) is this with a parser.
"""
import contextlib
import io
import os.path as osp
import sys
import time
from typing import Dict, Optional, Sequence

from .errors import InputError
from .exports import PredictionWriter
from .output_folder import OutputFolder
from .predictor import Predictor
from .reading import image_size, list_inputs, read_image
from .tiling import image_tiles, tile_px


def predict_to_folder(inputs: str, config: str, checkpoint: str, out: str, overwrite: bool = False,
                      gt: Optional[str] = None, skip_bad: bool = False, quiet: bool = False,
                      **predictor_kwargs) -> PredictionWriter:
    """Predict an image, a folder or a glob pattern into the output folder ``out`` (written only when
    the run succeeds; nothing of an earlier folder survives ``overwrite``); returns the finished writer
    (``images`` written, ``n_instances``, ``skipped``). ``gt``: a COCO file whose image and category ids the COCO exports
    use. ``predictor_kwargs``: as :class:`Predictor`. Bad input raises :class:`InputError`."""
    writer = None
    try:
        paths = list_inputs(inputs)
        predictor = Predictor(config, checkpoint, **predictor_kwargs)
        gt_coco = None
        if gt:
            from pycocotools.coco import COCO
            if not osp.isfile(gt):
                raise InputError(f'{gt}: ground-truth file not found')
            with contextlib.redirect_stdout(io.StringIO()):
                gt_coco = COCO(gt)
        writer = PredictionWriter(OutputFolder(out, overwrite), predictor.classes, predictor.cultures,
                                  predictor.kinds, predictor.palette, gt_coco,
                                  image_culture=predictor.has_image_culture)
        for path in paths:
            writer.gt_image(path)  # every input must be in --gt before anything runs
        predict_files(predictor, paths, writer, skip_bad=skip_bad, quiet=quiet)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return writer


def predict_files(predictor, paths: Sequence[str], writer: PredictionWriter, skip_bad: bool = False,
                  quiet: bool = False, timings: Optional[Dict[str, float]] = None) -> None:
    """Predict every image and write its outputs, then commit the folder (``deepcis predict``).

    The progress bar counts tiles. An unreadable image stops the run (nothing is committed) unless
    ``skip_bad``. ``timings`` (if given) accumulates seconds spent reading, in the model
    (:meth:`Predictor.predict`) and writing.
    """
    from tqdm import tqdm
    timings = {} if timings is None else timings
    for key in ('read', 'predict', 'write'):
        timings.setdefault(key, 0.0)
    sizes = [image_size(p) for p in paths]
    tile, overlap = tile_px(predictor.tile_size, predictor.tile_overlap, predictor.scale)
    n_tiles = [len(image_tiles(*hw, tile, overlap)) if hw else 1 for hw in sizes]
    with tqdm(total=sum(n_tiles), desc='deepcis predict', unit='tile', disable=quiet) as bar:
        for path, expected in zip(paths, n_tiles):
            bar.set_postfix_str(osp.basename(path), refresh=False)
            t0 = time.perf_counter()
            try:
                img = read_image(path)
            except InputError as e:
                if not skip_bad:
                    raise
                writer.skip(path, str(e))
                bar.write(f'deepcis predict: skipped {e}', file=sys.stderr)
                bar.update(expected)
                continue
            t1 = time.perf_counter()
            bar.total += len(image_tiles(*img.shape[:2], tile, overlap)) - expected  # header size was unknown/other
            inst = predictor.predict(img, progress=bar.update)
            t2 = time.perf_counter()
            writer.add(path, img, inst)
            del img, inst
            timings['read'] += t1 - t0
            timings['predict'] += t2 - t1
            timings['write'] += time.perf_counter() - t2
        t3 = time.perf_counter()
        writer.finish()
        timings['write'] += time.perf_counter() - t3
