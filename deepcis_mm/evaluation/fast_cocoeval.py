"""pycocotools' COCOeval with a faster, identical per-image matching.

``COCOeval.evaluateImg`` matches detections to ground truth in three nested Python loops (thresholds x
detections x ground truths) and dominates evaluation time. :class:`FastCOCOeval` runs the same greedy
loop only over the ground truths a detection overlaps by at least the lowest IoU threshold (usually
0-2 of them); every output field is identical to upstream's (tests compare them element by element).
"""
import numpy as np
from pycocotools.cocoeval import COCOeval


class FastCOCOeval(COCOeval):
    """Drop-in :class:`pycocotools.cocoeval.COCOeval` with a faster, identical ``evaluateImg``."""

    def evaluateImg(self, imgId, catId, aRng, maxDet):
        p = self.params
        if p.useCats:
            gt = self._gts[imgId, catId]
            dt = self._dts[imgId, catId]
        else:
            gt = [g for cId in p.catIds for g in self._gts[imgId, cId]]
            dt = [d for cId in p.catIds for d in self._dts[imgId, cId]]
        if len(gt) == 0 and len(dt) == 0:
            return None
        for g in gt:  # as upstream: later consumers read g['_ignore']
            g['_ignore'] = 1 if g['ignore'] or (g['area'] < aRng[0] or g['area'] > aRng[1]) else 0
        # sort dt highest score first, gt ignore last (stable sorts, as upstream)
        gtind = np.argsort([g['_ignore'] for g in gt], kind='mergesort')
        gt = [gt[i] for i in gtind]
        dtind = np.argsort([-d['score'] for d in dt], kind='mergesort')
        dt = [dt[i] for i in dtind[0:maxDet]]
        crowd = [bool(o['iscrowd']) for o in gt]
        ious = self.ious[imgId, catId][:, gtind] if len(self.ious[imgId, catId]) > 0 \
            else self.ious[imgId, catId]
        T, G, D = len(p.iouThrs), len(gt), len(dt)
        gtm = np.zeros((T, G))
        dtm = np.zeros((T, D))
        gtIg = np.array([g['_ignore'] for g in gt])
        dtIg = np.zeros((T, D))
        if len(ious) != 0:
            thr = [min(t, 1 - 1e-10) for t in p.iouThrs]
            t_min = min(thr)
            ig = gtIg.tolist()
            for dind, d in enumerate(dt):
                # only gts reaching the lowest threshold can match: the others fail upstream's IoU test
                # at every threshold, and skipping them cannot change where its scan stops
                cand = np.flatnonzero(ious[dind] >= t_min).tolist()
                if not cand:
                    continue
                vals = ious[dind, cand].tolist()
                for tind, t in enumerate(thr):
                    iou, m = t, -1
                    for gind, v in zip(cand, vals):  # upstream's loop, over the candidates
                        if gtm[tind, gind] > 0 and not crowd[gind]:
                            continue
                        if m > -1 and ig[m] == 0 and ig[gind] == 1:
                            break
                        if v < iou:
                            continue
                        iou, m = v, gind
                    if m == -1:
                        continue
                    dtIg[tind, dind] = ig[m]
                    dtm[tind, dind] = gt[m]['id']
                    gtm[tind, m] = d['id']
        # set unmatched detections outside of area range to ignore
        a = np.array([d['area'] < aRng[0] or d['area'] > aRng[1] for d in dt]).reshape((1, len(dt)))
        dtIg = np.logical_or(dtIg, np.logical_and(dtm == 0, np.repeat(a, T, 0)))
        return {
            'image_id': imgId,
            'category_id': catId,
            'aRng': aRng,
            'maxDet': maxDet,
            'dtIds': [d['id'] for d in dt],
            'gtIds': [g['id'] for g in gt],
            'dtMatches': dtm,
            'gtMatches': gtm,
            'dtScores': [d['score'] for d in dt],
            'gtIgnore': gtIg,
            'dtIgnore': dtIg,
        }
