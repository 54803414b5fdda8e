"""segm AP50 of one image's detections against its ground truth (``deepcis predict --gt``'s overlay caption)."""
import contextlib
import io
from typing import Optional, Sequence

from .fast_cocoeval import FastCOCOeval


def image_ap50(gt, image_id: int, dets: Sequence[dict]) -> Optional[float]:
    """segm AP50 of one image's detections against the ground truth, or None without any."""
    if not gt.getAnnIds(imgIds=[image_id]):
        return None
    if not dets:
        return 0.0
    # pycocotools prints a dozen progress lines per call: one image's caption needs none of them
    with contextlib.redirect_stdout(io.StringIO()):
        E = FastCOCOeval(gt, gt.loadRes([dict(d) for d in dets]), 'segm')
        E.params.imgIds = [image_id]
        E.params.maxDets = [100, 1000, 3000]
        E.evaluate()
        E.accumulate()
    prec = E.eval['precision'][0, :, :, 0, -1]
    prec = prec[prec > -1]
    return float(prec.mean()) if prec.size else None
