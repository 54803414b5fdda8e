"""The model on images: :class:`Predictor` runs a trained config + checkpoint at a fixed pixel scale.

Images are cut into overlapping tiles of the model's input size (:mod:`.tiling`), the tiles go through
the model in batches without being resized (unless ``scale`` says the images are at another
magnification), and the masks stay cropped to their objects from the mask head on
(:mod:`~deepcis_mm.models.cropped_mask_results`, :mod:`.instances`).
The class table (culture and kind per label) is the checkpoint's ``dataset_meta``.
"""
import math
import os.path as osp
import pickle
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config

from ..datasets.categories import class_table, culture_palette
from ..engine.checkpoint_fit import CheckpointMismatch, init_detector_strict
from ..engine.cpu_fallback import apply_cpu_fallback
from ..models.cropped_mask_results import crop_mask_results
from ..models.culture_consensus import culture_consensus
from .errors import InputError
from .instances import Instances, resolve_overlaps
from .tiling import (RESIZES, image_tiles, model_input_side, owned_by_tile, scale_detection_budget, tile_cores,
                     tile_px)

# test-pipeline steps replaced by the predictor's own loading and fixed-factor resize
_DROPPED = ('LoadImageFromFile', 'LoadImageFromNDArray', 'LoadAnnotations', 'LoadPanopticAnnotations',
            'NormalizeIntensity')  # read_image applies the same intensity rule


def check_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N' that torch can use, else :class:`InputError`."""
    dev = str(device).strip().lower()
    if dev == 'cpu':
        return dev
    if dev == 'cuda' or (dev.startswith('cuda:') and dev[5:].isdigit()):
        if not torch.cuda.is_available():
            raise InputError(f'--device {device}: torch sees no CUDA GPU on this machine (use --device cpu)')
        index = int(dev[5:]) if ':' in dev else 0
        if index >= torch.cuda.device_count():
            raise InputError(f'--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) visible')
        return dev
    raise InputError(f"--device {device}: expected 'cpu', 'cuda' or 'cuda:N'")


class Predictor:
    """Config + checkpoint -> per-image :class:`Instances` (masks cropped to their objects).

    Args:
        config, checkpoint: a DeepCIS (or mmdet) config and its trained weights; a checkpoint that
            does not fit the config is an error.
        device: 'cpu' or 'cuda[:N]'. score_thr: keep detections scoring at least this.
        consensus: image-level culture consensus (one culture per image; off for co-cultures).
        scale: model-input pixels per image pixel: 1 (default) predicts at the images' own pixel
            scale, the scale the model was trained on when the images have the training
            magnification; 0.5 for images at twice that magnification, 2 for half.
        tile_size, tile_overlap: tile side and overlap in model-input pixels (default: the config's
            test input side, see :func:`model_input_side`, and a quarter of it). Images whose side
            is at most ``tile_size / scale`` go through whole.
        batch_size: tiles per forward pass.
        fuse_conv_bn: fold BN into the preceding convs (mmcv ``fuse_conv_bn``): the same detections to
            float tolerance, ~11 % less CPU time on the paper model (docs/benchmarks.md).

    Tiles are never resized (beyond ``scale``). The middles of the overlaps cut the image into one
    core per tile; a detection is kept from the tile whose core holds its box centre, so an object
    crossing a tile border appears once. Detections then go through the overlap rule of
    :func:`~.instances.resolve_overlaps` once per image.
    """

    def __init__(self, config: str, checkpoint: str, device: str = 'cpu', score_thr: float = 0.3,
                 consensus: bool = False, tile_size: Optional[int] = None, tile_overlap: Optional[int] = None,
                 scale: float = 1.0, batch_size: int = 1, fuse_conv_bn: bool = True):
        device = check_device(device)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise InputError(f'--scale {scale:g}: must be a positive number')
        if batch_size < 1:
            raise InputError(f'--batch-size {batch_size}: must be at least 1')
        if not 0 <= score_thr <= 1:
            raise InputError(f'--score-thr {score_thr}: must be in [0, 1]')
        for path, what in ((config, 'config'), (checkpoint, 'checkpoint')):
            if not osp.isfile(path):
                raise InputError(f'{path}: {what} file not found')
        try:
            cfg = Config.fromfile(config)
        except Exception as e:
            raise InputError(f'{config}: not a loadable config ({_first_line(e)})') from None
        tile_size = model_input_side(cfg) if tile_size is None else tile_size
        tile_overlap = tile_size // 4 if tile_overlap is None else tile_overlap
        if tile_size < 32:
            raise InputError(f'--tile-size {tile_size}: must be at least 32 px')
        if not 0 <= tile_overlap < tile_size:
            raise InputError(f'--tile-overlap {tile_overlap}: must be >= 0 and below --tile-size {tile_size}')
        if not str(device).startswith('cuda'):
            apply_cpu_fallback(cfg, force=True)
        cfg.model.setdefault('backbone', {})['init_cfg'] = None  # weights come from the checkpoint
        rcnn_test = (cfg.model.get('test_cfg') or {}).get('rcnn')
        if rcnn_test is not None:
            if 'culture_consensus' in rcnn_test:
                rcnn_test['culture_consensus'] = False  # applied below, after tiles are merged
            # detections under our threshold would only be pasted and dropped (NMS keeps the same
            # higher-scoring boxes either way)
            rcnn_test['score_thr'] = max(float(rcnn_test.get('score_thr', 0.0)), score_thr)
        # the caps were set for the training images' size: a tile (or a whole image up to a tile) that
        # holds more objects gets proportionally more, so whole and tiled predictions agree
        scale_detection_budget(cfg, tile_size * scale)
        model = self._load_weights(cfg, checkpoint, config, device)  # sets model.dataset_meta
        classes = list(model.dataset_meta.get('classes') or [])
        if not classes:
            raise InputError(f'{checkpoint}: no class names in its meta (train it with tools/train.py)')
        try:
            self.class_table = class_table(model.dataset_meta)
        except ValueError as e:
            raise InputError(f'{checkpoint}: {e}') from None
        self.model, self.cfg, self.classes = model.eval(), cfg, classes
        if fuse_conv_bn:
            from mmcv.cnn import fuse_conv_bn as fuse
            fuse(self.model)
        self.has_image_culture = hasattr(getattr(model, 'roi_head', None), 'img_culture_head')
        self.image_cultures = None  # this image's tiles: (pixels, culture names, image culture posterior)
        # outputs name a class without a culture (EVICAN2: 'cell', 'nucleus') by its class name
        self.cultures = [c or name for c, name in zip(self.class_table[0], classes)]
        self.kinds = list(self.class_table[1])
        self.palette = culture_palette([dict(culture=c, kind=k) for c, k in zip(self.cultures, self.kinds)])
        self.score_thr, self.consensus, self.scale = score_thr, consensus, float(scale)
        self.tile_size, self.tile_overlap, self.batch_size = int(tile_size), int(tile_overlap), int(batch_size)
        self.nms_cfg = (cfg.model.get('test_cfg') or {}).get('rcnn', {}).get('nms') or \
            dict(type='nms', iou_threshold=0.5)
        self.pipeline = self._build_pipeline(cfg)
        crop_mask_results(self.model)  # masks cropped to their objects from the mask head on

    @staticmethod
    def _load_weights(cfg: Config, checkpoint: str, config: str, device: str) -> torch.nn.Module:
        """The one place where the model is built and the checkpoint read and checked against it
        (strictly: a checkpoint of another config names the first misfit tensor); the model carries
        the checkpoint's ``meta.dataset_meta``."""
        try:
            return init_detector_strict(cfg, checkpoint, config, device)[0]
        except CheckpointMismatch as e:
            raise InputError(str(e)) from None
        except (pickle.UnpicklingError, EOFError, OSError, RuntimeError, KeyError, AttributeError) as e:
            raise InputError(f'{checkpoint}: not a readable PyTorch checkpoint ({_first_line(e)})') from None

    def _build_pipeline(self, cfg: Config):
        """The config's test pipeline from an array: no annotations, and one fixed resize by ``scale``
        in place of the config's resize (which would rescale every tile to the model's input size)."""
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg
        steps = [dict(type='mmdet.LoadImageFromNDArray'),
                 dict(type='mmdet.Resize', scale_factor=self.scale, keep_ratio=True)]
        for step in get_test_pipeline_cfg(cfg):
            name = str(step.get('type', '')).split('.')[-1]
            if name in _DROPPED or name in RESIZES:
                continue
            step = dict(step)
            if name == 'PackDetInputs':
                step['meta_keys'] = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')
            steps.append(step)
        if not any(str(s.get('type', '')).endswith('PackDetInputs') for s in steps):
            steps.append(dict(type='mmdet.PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')))
        return Compose(steps)

    def _infer(self, tiles: Sequence[np.ndarray]) -> List[Instances]:
        """Run the model on tiles (one batch); instances in tile coordinates, masks cropped."""
        from mmengine.dataset import pseudo_collate
        data = pseudo_collate([self.pipeline(dict(img=t, img_id=i)) for i, t in enumerate(tiles)])
        with torch.no_grad():
            outs = self.model.test_step(data)
        res = []
        for tile, out in zip(tiles, outs):
            if 'image_culture_probs' in out.metainfo and self.image_cultures is not None:
                self.image_cultures.append((tile.shape[0] * tile.shape[1], out.metainfo['image_cultures'],
                                            out.metainfo['image_culture_probs']))
            pred = out.pred_instances
            keep = [i for i in range(len(pred)) if float(pred.scores[i]) >= self.score_thr
                    and not isinstance(pred.masks, torch.Tensor) and pred.masks[i] is not None]
            crops = [pred.masks[i] for i in keep]
            idx = torch.tensor(keep, dtype=torch.long)
            res.append(Instances(
                tile.shape[:2], pred.bboxes[idx].cpu().numpy().reshape(-1, 4), pred.scores[idx].cpu().numpy(),
                pred.labels[idx].cpu().numpy().astype(np.int64),
                np.array([(x0, y0) for x0, y0, _ in crops], np.int64).reshape(-1, 2), [c[2] for c in crops],
                np.zeros(len(keep), bool)))
        return res

    def predict(self, img: np.ndarray, progress: Optional[Callable[[int], None]] = None) -> Instances:
        """Predict one uint8 BGR image (tiled where large): instances after the overlap rule, by score.

        ``progress(n)`` is called after every batch with the number of tiles it held.
        """
        h, w = img.shape[:2]
        t, ov = tile_px(self.tile_size, self.tile_overlap, self.scale)
        tiles = image_tiles(h, w, t, ov)
        cores = tile_cores(tiles, t, h, w)
        parts = []
        self.image_cultures = []
        for start in range(0, len(tiles), self.batch_size):
            batch = tiles[start:start + self.batch_size]
            found = self._infer([img[y0:y0 + th, x0:x0 + tw] for y0, x0, th, tw in batch])
            for (y0, x0, th, tw), core, inst in zip(batch, cores[start:start + self.batch_size], found):
                if not len(inst):
                    continue
                ext = inst.mask_boxes()
                keep = owned_by_tile(ext, x0, y0, core)
                inst = inst.select(keep)
                ext = ext[keep]
                inst.truncated = ((ext[:, 0] <= 0) & (x0 > 0)) | ((ext[:, 1] <= 0) & (y0 > 0)) | \
                    ((ext[:, 2] >= tw) & (x0 + tw < w)) | ((ext[:, 3] >= th) & (y0 + th < h))
                inst.origins = inst.origins + np.array([x0, y0])
                inst.bboxes = inst.bboxes + np.array([x0, y0, x0, y0], np.float32)
                inst.shape = (h, w)
                parts.append(inst)
            if progress is not None:
                progress(len(batch))
        inst = Instances.concat(parts, (h, w))
        if self.consensus:
            inst = self._consensus(inst)
        inst = resolve_overlaps(inst, self.kinds)
        inst.image_culture = image_culture_of_tiles(self.image_cultures)
        return inst

    def _consensus(self, inst: Instances) -> Instances:
        """Image-level culture vote over all tiles, then class-wise NMS again (the model's
        :func:`~deepcis_mm.models.culture_consensus`, with the checkpoint's class table)."""
        if not len(inst):
            return inst
        keep, labels = culture_consensus(torch.from_numpy(inst.bboxes).float(), torch.from_numpy(inst.scores),
                                         torch.from_numpy(inst.labels), self.class_table, self.nms_cfg)
        inst = inst.select(keep.numpy())
        inst.labels = labels.numpy()
        return inst


def image_culture_of_tiles(tiles: Sequence[tuple]) -> Optional[Tuple[str, float]]:
    """(culture, probability) of an image from its tiles' image-culture posteriors
    ``(pixels, culture names, probs)``: their pixel-weighted mean; None without the branch."""
    if not tiles:
        return None
    weights = np.array([t[0] for t in tiles], np.float64)
    probs = (np.array([t[2] for t in tiles], np.float64) * weights[:, None]).sum(0) / weights.sum()
    best = int(np.argmax(probs))
    return str(tiles[0][1][best]), float(probs[best])


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
