"""Inference for users: images in (any of JPEG/PNG/TIFF, 8/16 bit, gray/RGB), instances out.

:class:`Predictor` runs a trained config + checkpoint at a fixed pixel scale: images are cut into
overlapping tiles of the model's input size, the tiles go through the model in batches without
being resized (unless ``scale`` says the images are at another magnification), and the masks stay
cropped to their objects from the mask head to every export (:mod:`.exports`).
"""
import glob
import math
import os
import os.path as osp
import pickle
import types
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch
from mmengine.config import Config

from ..datasets.categories import class_table
from ..datasets.evican import culture_palette
from ..datasets.transforms import normalize_intensity
from ..engine.checkpoint_fit import CheckpointMismatch, init_detector_strict
from ..engine.cpu_fallback import apply_cpu_fallback
from ..models.culture_consensus import culture_consensus
from .instances import Instances, resolve_overlaps, tight_crop

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.tif', '.tiff', '.bmp')
# test-pipeline steps replaced by the predictor's own loading and fixed-factor resize
_RESIZES = ('Resize', 'RandomResize', 'RandomChoiceResize', 'FixShapeResize', 'ResizeShortestEdge')
_DROPPED = ('LoadImageFromFile', 'LoadImageFromNDArray', 'LoadAnnotations', 'LoadPanopticAnnotations',
            'NormalizeIntensity')  # read_image applies the same intensity rule


class InputError(ValueError):
    """Bad user input (file, folder, config, checkpoint, option); the message names it."""


def list_inputs(spec: str) -> List[str]:
    """One image, every image of a folder, or a glob pattern -> sorted paths."""
    if osp.isfile(spec):
        return [spec]
    if osp.isdir(spec):
        paths = [osp.join(spec, n) for n in sorted(os.listdir(spec)) if n.lower().endswith(IMAGE_EXTS)]
    else:
        paths = sorted(p for p in glob.glob(spec) if p.lower().endswith(IMAGE_EXTS))
    if not paths:
        raise InputError(f'{spec}: no images ({", ".join(IMAGE_EXTS)}) found')
    return paths


def image_size(path: str) -> Optional[Tuple[int, int]]:
    """(height, width) from the file header without decoding the pixels; None if not readable so."""
    from PIL import Image
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:
        return None


def check_complete(path: str) -> None:
    """Raise :class:`InputError` if an image file ends before its data does (decoders fill the rest
    with grey and carry on): JPEG without its end marker after the last scan, PNG without IEND,
    TIFF whose strips/tiles cannot all be read."""
    ext = osp.splitext(path)[1].lower()
    if ext in ('.jpg', '.jpeg'):
        with open(path, 'rb') as f:
            data = f.read()
        # entropy-coded data cannot hold FF D9 (FF is stuffed as FF 00): an EOI after the last SOS
        if data.rfind(b'\xff\xd9') < max(data.rfind(b'\xff\xda'), 0):
            raise InputError(f'{path}: truncated or corrupt image (JPEG ends without its end marker)')
    elif ext == '.png':
        with open(path, 'rb') as f:
            f.seek(max(osp.getsize(path) - 4096, 0))  # IEND is last; some writers pad after it
            tail = f.read()
        if b'IEND' not in tail:
            raise InputError(f'{path}: truncated or corrupt image (PNG ends without its IEND chunk)')
    elif ext in ('.tif', '.tiff'):
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(path) as im:
                im.load()
        except (UnidentifiedImageError, NotImplementedError, ValueError):
            pass  # a TIFF flavour Pillow does not decode: OpenCV's reading alone decides
        except (OSError, SyntaxError) as e:
            raise InputError(f'{path}: truncated or corrupt image ({str(e).splitlines()[0][:120]})') from None


def read_image(path: str) -> np.ndarray:
    """Any gray/RGB(A), 8/16-bit or float image -> uint8 BGR exactly as the training pipeline sees it
    (:func:`~deepcis_mm.datasets.normalize_intensity`: 8-bit unchanged, 16-bit its 8-bit rendering).

    Unreadable, truncated or corrupt files raise :class:`InputError` naming the file.
    """
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise InputError(f'{path}: unreadable image')
    check_complete(path)
    try:
        return normalize_intensity(img, path)
    except ValueError as e:
        raise InputError(str(e)) from None


def tile_origins(length: int, tile: int, overlap: int) -> List[int]:
    """Tile start positions covering [0, length) with at least ``overlap`` px shared by neighbours."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step)) + [length - tile]
    return sorted(set(starts))


def core_cuts(starts: List[int], tile: int, length: int) -> List[float]:
    """Borders of the tiles' cores along one axis: the middle of each overlap, 0 and ``length``."""
    return [0.0] + [(a + tile + b) / 2 for a, b in zip(starts, starts[1:])] + [float(length)]


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


def model_input_side(cfg: Config) -> int:
    """Default tile side: the longest side the config's test ``Resize`` feeds the model (at most 1024
    px, a multiple of 32); 1024 when the test pipeline has no resize with a fixed scale."""
    from mmdet.utils import get_test_pipeline_cfg
    try:
        pipeline = get_test_pipeline_cfg(cfg)
    except Exception:
        pipeline = []
    for step in pipeline:
        if str(step.get('type', '')).split('.')[-1] in _RESIZES and step.get('scale') is not None:
            scale = step['scale']
            side = max(scale) if isinstance(scale, (tuple, list)) else int(scale)
            return int(max(32, min(1024, side)) // 32 * 32)
    return 1024


def scale_detection_budget(cfg: Config, input_side: float) -> float:
    """Raise the per-image proposal and detection caps (``nms_pre``, ``max_per_img`` of the test_cfg and
    its ``rpn``/``rcnn`` parts) in proportion to the model-input area of one tile over the area they
    were set for (the short side of the config's test ``Resize`` squared), so that a dense tile or a
    whole large image is not cut at the count a small training image needed. Returns the factor (>= 1)."""
    from mmdet.utils import get_test_pipeline_cfg
    ref = None
    try:
        for step in get_test_pipeline_cfg(cfg):
            if str(step.get('type', '')).split('.')[-1] in _RESIZES and step.get('scale') is not None:
                sc = step['scale']
                ref = min(sc) if isinstance(sc, (tuple, list)) else int(sc)
                break
    except Exception:
        pass
    factor = max(1.0, (input_side / ref) ** 2) if ref else 1.0
    test_cfg = cfg.model.get('test_cfg') or {}
    for part in (test_cfg, test_cfg.get('rpn'), test_cfg.get('rcnn')):
        if isinstance(part, dict):
            for key in ('nms_pre', 'max_per_img'):
                if isinstance(part.get(key), int) and part[key] > 0:
                    part[key] = int(math.ceil(part[key] * factor))
    return factor


def _cropped_predict_by_feat_single(self, mask_preds, bboxes, labels, img_meta, rcnn_test_cfg,
                                    rescale=False, activate_map=False):
    """FCNMaskHead's mask pasting, one instance at a time into its own box (mmdet's CPU path pastes
    box by box too, then copies into an instances x image array): returns [(x0, y0, bool crop)]."""
    from mmdet.models.roi_heads.mask_heads.fcn_mask_head import _do_paste_mask
    scale_factor = bboxes.new_tensor(img_meta['scale_factor']).repeat((1, 2))
    img_h, img_w = img_meta['ori_shape'][:2]
    if not activate_map:
        mask_preds = mask_preds.sigmoid()
    if rescale:
        bboxes /= scale_factor
    else:
        img_h = int(round(img_h * float(scale_factor[0, 1])))
        img_w = int(round(img_w * float(scale_factor[0, 0])))
    n = len(mask_preds)
    if not self.class_agnostic:
        mask_preds = mask_preds[range(n), labels][:, None]
    thr = rcnn_test_cfg.mask_thr_binary
    crops = []
    for i in range(n):
        probs, (ys, xs) = _do_paste_mask(mask_preds[i:i + 1], bboxes[i:i + 1], img_h, img_w, skip_empty=True)
        found = tight_crop((probs[0] >= thr).cpu().numpy())
        if found is None:
            crops.append(None)
        else:
            x0, y0, crop = found
            crops.append((int(xs.start) + x0, int(ys.start) + y0, crop))
    return crops


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

    Tiles are never resized (beyond ``scale``). The middles of the overlaps cut the image into one
    core per tile; a detection is kept from the tile whose core holds its box centre, so an object
    crossing a tile border appears once. Detections then go through the overlap rule of
    :func:`~.instances.resolve_overlaps` once per image.
    """

    def __init__(self, config: str, checkpoint: str, device: str = 'cpu', score_thr: float = 0.3,
                 consensus: bool = False, tile_size: Optional[int] = None, tile_overlap: Optional[int] = None,
                 scale: float = 1.0, batch_size: int = 1):
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
        self.budget_factor = scale_detection_budget(cfg, tile_size * scale)
        model = self._load_weights(cfg, checkpoint, config, device)  # sets model.dataset_meta
        classes = list(model.dataset_meta.get('classes') or [])
        if not classes:
            raise InputError(f'{checkpoint}: no class names in its meta (train it with tools/train.py)')
        try:
            self.class_table = class_table(model.dataset_meta)
        except ValueError as e:
            raise InputError(f'{checkpoint}: {e}') from None
        self.model, self.cfg, self.classes = model.eval(), cfg, classes
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
        from mmdet.models.roi_heads.mask_heads import FCNMaskHead
        for module in self.model.modules():
            if isinstance(module, FCNMaskHead):  # masks cropped from the start (see the function)
                module._predict_by_feat_single = types.MethodType(_cropped_predict_by_feat_single, module)

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
            if name in _DROPPED or name in _RESIZES:
                continue
            step = dict(step)
            if name == 'PackDetInputs':
                step['meta_keys'] = ('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')
            steps.append(step)
        if not any(str(s.get('type', '')).endswith('PackDetInputs') for s in steps):
            steps.append(dict(type='mmdet.PackDetInputs',
                              meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')))
        return Compose(steps)

    # --- tiling -------------------------------------------------------------------------------------
    def tile_px(self) -> Tuple[int, int]:
        """(tile side, overlap) in image pixels."""
        t = max(32, int(round(self.tile_size / self.scale)))
        return t, min(t - 1, int(round(self.tile_overlap / self.scale)))

    def tiles(self, height: int, width: int) -> List[Tuple[int, int, int, int]]:
        """(y0, x0, h, w) of every tile of an image; one tile when the image fits."""
        t, ov = self.tile_px()
        ys, xs = tile_origins(height, t, ov), tile_origins(width, t, ov)
        return [(y0, x0, min(t, height), min(t, width)) for y0 in ys for x0 in xs]

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
        tiles = self.tiles(h, w)
        t, _ = self.tile_px()
        ys = sorted({y for y, _, _, _ in tiles})
        xs = sorted({x for _, x, _, _ in tiles})
        ycuts, xcuts = core_cuts(ys, t, h), core_cuts(xs, t, w)
        parts = []
        self.image_cultures = []
        for start in range(0, len(tiles), self.batch_size):
            batch = tiles[start:start + self.batch_size]
            found = self._infer([img[y0:y0 + th, x0:x0 + tw] for y0, x0, th, tw in batch])
            for (y0, x0, th, tw), inst in zip(batch, found):
                if not len(inst):
                    continue
                iy, ix = ys.index(y0), xs.index(x0)
                ext = inst.mask_boxes()
                cx, cy = (ext[:, 0] + ext[:, 2]) / 2 + x0, (ext[:, 1] + ext[:, 3]) / 2 + y0
                # the cores partition the image: each mask's box centre belongs to exactly one tile
                keep = (cx >= xcuts[ix]) & (cx < xcuts[ix + 1]) & (cy >= ycuts[iy]) & (cy < ycuts[iy + 1])
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
