"""One intensity rule for every bit depth, shared by training, testing and prediction.

The model sees 3-channel BGR ``uint8`` pixels, whatever the file holds:

- 8-bit (``uint8``) images are passed through unchanged, bit for bit (so results on 8-bit data, e.g.
  ``make demo``, are what they were before this rule existed).
- Other integer images (``uint16``, ``int32`` ...): if no pixel exceeds 255 the data are already on the
  8-bit scale (8-bit data stored in a 16-bit file) and are taken as they are; otherwise the image is
  rendered to 8 bits the way OpenCV, ImageJ and scikit-image do: the high byte (``value >> 8`` for
  16-bit, generally ``floor(value * 256 / 2**bits)``). A 16-bit file and its 8-bit rendering therefore
  give exactly the same model input, through resizing and everything after it.
- Float images: values in [0, 1] are scaled by 255; values up to 255 are taken as they are; larger
  values as 16-bit counts (``/ 256``); then rounded.
- Negative values clip to 0; gray becomes three equal channels; an alpha channel is dropped.

There is no per-image stretching: the same raw value always means the same input, across images and
runs. 12-bit camera data stored in 16-bit files therefore look dark (4095 -> 15); the converter reports
the bit depths and the largest value it found so that such data can be rescaled once, up front.
"""
from typing import Optional

import cv2
import numpy as np
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


def _to_uint8(img: np.ndarray) -> np.ndarray:
    peak = float(img.max()) if img.size else 0.0
    if img.dtype.kind == 'f':
        scale = 255.0 if peak <= 1.0 else 1.0 if peak <= 255 else 1 / 256
        return np.rint(np.clip(img.astype(np.float64) * scale, 0, 255)).astype(np.uint8)
    if peak <= 255:
        return np.clip(img, 0, 255).astype(np.uint8)
    bits = 8 * img.dtype.itemsize - (1 if img.dtype.kind == 'i' else 0)  # value bits
    return (np.clip(img, 0, None).astype(np.uint64) >> (bits - 8)).astype(np.uint8)


def normalize_intensity(img: np.ndarray, path: Optional[str] = None) -> np.ndarray:
    """Any gray/RGB(A), 8/16-bit, integer or float image (as read with ``cv2.IMREAD_UNCHANGED``)
    -> 3-channel BGR ``uint8`` (see the module docstring for the rule)."""
    where = f'{path}: ' if path else ''
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ValueError(f'{where}unsupported image shape {img.shape} (need gray, BGR or BGRA)')
    if img.dtype != np.uint8:
        if img.dtype.kind not in 'uif':
            raise ValueError(f'{where}unsupported pixel type {img.dtype}')
        img = _to_uint8(img)
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return np.ascontiguousarray(img)


@TRANSFORMS.register_module()
class NormalizeIntensity(BaseTransform):
    """Bring ``results['img']`` of any bit depth to the model's 8-bit BGR (:func:`normalize_intensity`).

    Put it right after ``LoadImageFromFile(color_type='unchanged')``: mmcv's default ``'color'`` read
    converts 16-bit files to 8 bits before any transform could see them (a 16-bit file holding values
    up to 255 becomes black). 8-bit files give the same pixels either way.

    Required keys: img. Modified keys: img, img_shape.
    """

    def transform(self, results: dict) -> dict:
        img = normalize_intensity(results['img'], results.get('img_path'))
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        return results
