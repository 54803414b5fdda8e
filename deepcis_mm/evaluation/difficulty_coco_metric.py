"""COCO bbox/segm metrics per EVICAN difficulty level, per class, class-agnostic, and culture accuracy."""
import copy
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional, Sequence

import numpy as np
from mmdet.evaluation.metrics import CocoMetric
from mmdet.registry import METRICS
from mmengine.logging import MMLogger
from pycocotools.cocoeval import COCOeval

from ..datasets.categories import class_table, culture_key
from ..datasets.evican import LEVELS
from .fast_cocoeval import FastCOCOeval

LEVEL_KEYS = ('all', *LEVELS)
STAT_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')
# pycocotools' default maxDets[-1]: the limit behind most published COCO AP numbers
STOCK_MAX_DETS = 100


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summary_max_dets(params) -> int:
    """The detection limit pycocotools' ``summarize`` uses for AP: ``maxDets[2]`` (or the last)."""
    return params.maxDets[min(2, len(params.maxDets) - 1)]


def coco_stats(precision: np.ndarray, params, recall: Optional[np.ndarray] = None) -> Dict[str, Optional[float]]:
    """The six AP numbers of ``COCOeval.summarize`` from a precision array accumulated by
    :func:`accumulate_subset` (last axis: the summary detection limit); None = n/a. With the recall
    array ``[T, K, A, 1]`` of the same accumulation, also ``AR_50``: recall at IoU 0.5 (area all).

    Means run over the entries > -1 exactly as pycocotools does (a class without ground truth in the
    evaluated images is left out, never counted as 0).
    """
    t50 = int(np.argmin(np.abs(params.iouThrs - 0.5)))
    t75 = int(np.argmin(np.abs(params.iouThrs - 0.75)))
    out = {}
    for name, t, a in (('mAP', None, 0), ('mAP_50', t50, 0), ('mAP_75', t75, 0), ('mAP_s', None, 1),
                       ('mAP_m', None, 2), ('mAP_l', None, 3)):
        s = precision[:, :, :, a, -1] if t is None else precision[t, :, :, a, -1]
        s = s[s > -1]
        out[name] = float(np.mean(s)) if s.size else None
    if recall is not None:
        r = recall[t50, :, 0, -1]
        r = r[r > -1]
        out['AR_50'] = float(np.mean(r)) if r.size else None
    return out


def precision_at_score(E: COCOeval, img_ids: Sequence[int], score_thr: float = 0.5) -> Dict[str, Optional[float]]:
    """Precision and recall at IoU 0.5 of the detections scoring >= ``score_thr`` (an operating point,
    unlike AP), over the images ``img_ids`` of an evaluated ``COCOeval`` (area all, summary limit).

    Counted from pycocotools' per-image matching: a detection is a true positive if it matched a
    ground truth at IoU 0.5; ignored (crowd) matches count neither way. None where nothing is counted.
    """
    pe = E._paramsEval
    t50 = int(np.argmin(np.abs(np.asarray(pe.iouThrs) - 0.5)))
    wanted, limit = set(img_ids), summary_max_dets(pe)
    n_det = n_tp = n_gt = 0
    for e in E.evalImgs:
        if e is None or e['image_id'] not in wanted or e['aRng'] != pe.areaRng[0]:
            continue
        # per-image detections are sorted by score and cut at the largest limit: cut at the summary's
        keep = (np.asarray(e['dtScores'])[:limit] >= score_thr) & ~np.asarray(e['dtIgnore'][t50], bool)[:limit]
        matched = np.asarray(e['dtMatches'][t50])[:limit] > 0
        n_det += int(keep.sum())
        n_tp += int((keep & matched).sum())
        n_gt += int((~np.asarray(e['gtIgnore'], bool)).sum())
    return dict(precision_50=n_tp / n_det if n_det else None, recall_50=n_tp / n_gt if n_gt else None)


def accumulate_subset(E: COCOeval, img_ids: Sequence[int], max_det: Optional[int] = None,
                      with_recall: bool = False):
    """Accumulate an evaluated ``COCOeval`` over a subset of its images at one detection limit
    (default: the summary limit, :func:`summary_max_dets`); return the precision array ``[T, R, K, A, 1]``.

    Axis K follows ``E._paramsEval.catIds``, which pycocotools sorts ascending (use
    :func:`category_index`). ``max_det`` below the evaluated limit gives exactly what a fresh COCOeval
    with that limit computes: greedy matching ranks detections by score, so the top ``max_det`` match
    the same ground truths either way.

    pycocotools' ``accumulate(p)`` indexes its stored per-image results by positions in ``p.imgIds``,
    so it cannot select a subset itself; here the per-image results of the subset are picked out in the
    evaluated order, which gives exactly what a fresh COCOeval restricted to those images computes.
    Only the detection limit the AP summary reads is accumulated (a third of the work).
    ``with_recall=True`` returns (precision, recall ``[T, K, A, 1]``).
    """
    pe = E._paramsEval
    pos = {i: n for n, i in enumerate(pe.imgIds)}
    sel = sorted(pos[i] for i in set(img_ids) if i in pos)
    n_img, n_area = len(pe.imgIds), len(pe.areaRng)
    n_cat = len(pe.catIds) if pe.useCats else 1
    sub = copy.copy(pe)
    sub.imgIds = [pe.imgIds[i] for i in sel]
    sub.maxDets = [summary_max_dets(pe) if max_det is None else max_det]
    saved = E.evalImgs, E._paramsEval, E.params
    try:
        E.evalImgs = [saved[0][k * n_area * n_img + a * n_img + i]
                      for k in range(n_cat) for a in range(n_area) for i in sel]
        E._paramsEval = E.params = sub
        E.accumulate(sub)
    finally:
        E.evalImgs, E._paramsEval, E.params = saved
    return (E.eval['precision'], E.eval['recall']) if with_recall else E.eval['precision']


def category_index(E: COCOeval) -> Dict[int, int]:
    """Category id -> position on the K axis of ``E``'s precision/recall arrays.

    ``COCOeval.evaluate`` replaces ``params.catIds`` by its sorted unique values, so position k is the
    k-th smallest evaluated id, whatever order the annotation file or the caller listed them in.
    """
    return {int(c): k for k, c in enumerate(E._paramsEval.catIds)}


@METRICS.register_module()
class DifficultyCocoMetric(CocoMetric):
    """mmdet's :class:`CocoMetric` with the paper's tables: bbox and segm mAP, mAP50, mAP75, mAP_s/m/l
    overall and per difficulty level (the ``difficulty`` tag of each image in ``ann_file``), per class
    per level, per-kind means (cells vs nuclei), class-agnostic AP, and culture accuracy of matched
    detections (class-agnostic match at IoU >= 0.5).

    Each IoU type is evaluated once (:class:`FastCOCOeval`, pycocotools with a vectorized, identical
    per-image matching) and accumulated per level; class-agnostic AP needs one more evaluation (all
    categories merged). Level means run over the classes with ground
    truth at that level; a class without is n/a (None in ``self.last_tables``, NaN in the returned
    scalars), never 0. The full tables of the last evaluation are in ``self.last_tables``
    (:class:`APTableHook` writes them to disk).

    Args:
        class_agnostic: also compute class-agnostic AP and culture accuracy.
        **kwargs: as :class:`mmdet.evaluation.CocoMetric` (``ann_file`` is required).
    """

    def __init__(self, *args, class_agnostic: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        if self._coco_api is None:
            raise ValueError('DifficultyCocoMetric: ann_file is required (it holds the difficulty tags)')
        self.ann_file = kwargs.get('ann_file', args[0] if args else None)
        self.class_agnostic = class_agnostic
        self.last_tables: Optional[dict] = None

    def _label_cat_ids(self) -> List[int]:
        """Category id of each label: the file's categories named in ``dataset_meta['classes']``, in
        file order, as mmdet's CocoDataset assigns labels (``cat2label``)."""
        classes = list(self.dataset_meta['classes'])
        cat_ids = self._coco_api.get_cat_ids(cat_names=classes)
        if len(cat_ids) != len(classes):
            names = [self._coco_api.cats[c]['name'] for c in cat_ids]
            missing = [c for c in classes if c not in names]
            raise ValueError(f'{self.ann_file}: the classes {missing[:5] or classes} are missing or named twice '
                             f'({len(cat_ids)} categories match {len(classes)} classes)')
        return cat_ids

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        """As :class:`CocoMetric`, keeping each image's predicted culture: the image branch's
        (``image_culture_probs``/``image_cultures`` in the sample, :class:`ImageCultureCascadeRoIHead`)
        or, for models without one, the score-weighted vote of its detections."""
        start = len(self.results)
        super().process(data_batch, data_samples)
        for (_, result), sample in zip(self.results[start:], data_samples):
            result['image_culture'] = self._image_culture(sample, result)

    def _image_culture(self, sample: dict, result: dict) -> Optional[tuple]:
        """(culture, probability or None, source) predicted for one image, or None."""
        probs, names = sample.get('image_culture_probs'), sample.get('image_cultures')
        if probs is not None and names is not None and len(probs) == len(names) and len(probs):
            best = int(np.argmax(probs))
            return names[best], float(probs[best]), 'image branch'
        labels = result.get('labels')
        if labels is None or not len(labels):
            return None
        cultures = class_table(self.dataset_meta)[0]
        votes: Dict[object, float] = defaultdict(float)
        for lab, score in zip(np.asarray(labels).tolist(), np.asarray(result['scores']).tolist()):
            if cultures[lab] is not None:
                votes[cultures[lab]] += score
        if not votes:
            return None
        winner = max(votes, key=lambda c: (votes[c], str(c)))  # as culture_consensus: name-ordered ties
        return winner, None, 'detection vote'

    def _image_culture_accuracy(self, preds: Sequence[dict], classes: List[dict]) -> dict:
        """Share of the images whose annotations name one culture for which that culture is predicted
        (an image without a prediction counts as wrong); images with several cultures (co-cultures)
        are counted apart."""
        culture_of = {c['id']: c['culture'] for c in classes}
        truth = defaultdict(set)
        for ann in self._coco_api.anns.values():
            if culture_of.get(ann['category_id']) is not None:
                truth[ann['image_id']].add(culture_of[ann['category_id']])
        pred = {r['img_id']: r.get('image_culture') for r in preds}
        n = correct = multi = 0
        sources = set()
        for img_id in self.img_ids:
            cultures = truth.get(img_id, set())
            if len(cultures) > 1:
                multi += 1
                continue
            if len(cultures) != 1 or img_id not in pred:
                continue
            n += 1
            p = pred[img_id]
            if p is not None:
                sources.add(p[2])
                correct += int(culture_key(p[0]) == culture_key(next(iter(cultures))))
        return dict(accuracy=correct / n if n else None, correct=correct, images=n,
                    multi_culture_images=multi, source=', '.join(sorted(sources)) or None)

    # --- predictions -> COCO detections (in memory: no JSON round trip) ----------------------------
    def _detections(self, preds: List[dict], iou_type: str) -> List[dict]:
        dets = []
        for res in preds:
            key = 'masks' if iou_type == 'segm' else 'bboxes'
            if key not in res:
                raise KeyError(f'DifficultyCocoMetric: predictions have no {key} for metric {iou_type!r}')
            scores = res['mask_scores'] if iou_type == 'segm' and 'mask_scores' in res else res['scores']
            for i, label in enumerate(res['labels']):
                d = dict(image_id=res['img_id'], category_id=self.cat_ids[label], score=float(scores[i]))
                if iou_type == 'segm':
                    rle = dict(res['masks'][i])
                    if isinstance(rle['counts'], bytes):
                        rle['counts'] = rle['counts'].decode()
                    d['segmentation'] = rle
                else:
                    x1, y1, x2, y2 = (float(v) for v in res['bboxes'][i])
                    d['bbox'] = [x1, y1, x2 - x1, y2 - y1]
                dets.append(d)
        return dets

    def _evaluate(self, coco_dt, iou_type: str, use_cats: bool) -> COCOeval:
        E = FastCOCOeval(self._coco_api, coco_dt, iou_type)
        E.params.catIds = self.cat_ids
        E.params.imgIds = self.img_ids
        E.params.maxDets = list(self.proposal_nums)
        E.params.iouThrs = self.iou_thrs
        E.params.useCats = int(use_cats)
        E.evaluate()
        return E

    # --- tables ------------------------------------------------------------------------------------
    def _level_images(self) -> Dict[object, List[int]]:
        imgs = self._coco_api.imgs
        levels = {'all': list(self.img_ids)}
        for lvl in LEVELS:
            levels[lvl] = [i for i in self.img_ids if int(imgs[i].get('difficulty', 0)) == lvl]
        return levels

    def _class_info(self) -> List[dict]:
        """One entry per evaluated class, in label order, each carrying its own category id.

        Culture and kind come from the annotation file's category of that id (the converter writes
        them); where the file has none, from the class table of ``dataset_meta``
        (:func:`~deepcis_mm.datasets.categories.class_table`: label k is category ``self.cat_ids[k]``),
        which raises naming a class of unknown kind. Never from a position in another order.
        """
        table = None
        info = []
        for label, cid in enumerate(self.cat_ids):
            cat = self._coco_api.cats[cid]
            culture, kind = cat.get('culture'), cat.get('kind')
            if kind is None:
                table = table or class_table(self.dataset_meta)
                culture, kind = table[0][label], table[1][label]
            info.append(dict(id=int(cid), name=cat['name'], culture=culture, kind=kind))
        return info

    def _gt_counts(self, img_ids: Sequence[int]) -> Dict[int, tuple]:
        """Per category id: (number of images, number of instances) of non-crowd ground truth."""
        imgs, inst = defaultdict(set), defaultdict(int)
        wanted = set(img_ids)
        for ann in self._coco_api.anns.values():
            if ann['image_id'] in wanted and not ann.get('iscrowd', 0):
                imgs[ann['category_id']].add(ann['image_id'])
                inst[ann['category_id']] += 1
        return {cid: (len(imgs[cid]), inst[cid]) for cid in self.cat_ids}

    def _iou_type_tables(self, E: COCOeval, levels, classes, counts) -> dict:
        max_dets = summary_max_dets(E._paramsEval)
        table = dict(levels=OrderedDict(), per_class=[], per_kind=OrderedDict(), max_dets=max_dets)
        # the stock summarize() of pycocotools' default parameters reads AP at 100 detections per image:
        # reported beside ours where our limit differs, so that numbers compare with other papers
        stock = STOCK_MAX_DETS if max_dets != STOCK_MAX_DETS and max(E._paramsEval.maxDets) >= STOCK_MAX_DETS \
            else None
        table['stock_max_dets'] = stock
        kinds = sorted({c['kind'] for c in classes if c['kind']})
        k_of = category_index(E)  # precision's K axis is in sorted-id order, not label order
        for lvl in LEVEL_KEYS:
            prec, rec = accumulate_subset(E, levels[lvl], with_recall=True)
            stats = coco_stats(prec, E.params, rec)
            if stock:
                stats[f'mAP_{stock}dets'] = coco_stats(accumulate_subset(E, levels[lvl], stock), E.params)['mAP']
            stats['n_images'] = len(levels[lvl])
            table['levels'][str(lvl)] = stats
            for c in classes:
                k = k_of[c['id']]
                row = dict(cls=c['name'], category_id=c['id'], culture=c['culture'], kind=c['kind'],
                           level=str(lvl))
                row.update(coco_stats(prec[:, :, k:k + 1], E.params))
                row['n_images'], row['n_instances'] = counts[lvl][c['id']]
                table['per_class'].append(row)
            if len(kinds) > 1:
                for kind in kinds:
                    rows = [r for r in table['per_class'] if r['level'] == str(lvl) and r['kind'] == kind]
                    table['per_kind'].setdefault(kind, OrderedDict())[str(lvl)] = {
                        s: _mean(r[s] for r in rows) for s in STAT_NAMES}
        return table

    def _culture_accuracy(self, E: COCOeval, levels, classes, dt_cat: Dict[int, int]) -> dict:
        """Culture of matched detections vs their ground truth (class-agnostic matching, IoU >= 0.5)."""
        culture_of = {c['id']: c['culture'] for c in classes}
        cultures = sorted({c for c in culture_of.values() if c}, key=str)
        index = {c: i for i, c in enumerate(cultures)}
        pe = E._paramsEval
        t50 = int(np.argmin(np.abs(np.asarray(pe.iouThrs) - 0.5)))
        level_of = {i: lvl for lvl in LEVELS for i in levels[lvl]}
        confusion = {lvl: np.zeros((len(cultures), len(cultures)), np.int64) for lvl in LEVEL_KEYS}
        for n, img_id in enumerate(pe.imgIds):
            e = E.evalImgs[n]  # category -1, area 'all' (first), max detections (last)
            if e is None:
                continue
            gt_cat = {g: self._coco_api.anns[g]['category_id'] for g in e['gtIds']}
            for d, g in zip(e['dtIds'], e['dtMatches'][t50]):
                if g <= 0:
                    continue
                gc, dc = culture_of.get(gt_cat[int(g)]), culture_of.get(dt_cat[d])
                if gc is None or dc is None:
                    continue
                for lvl in ('all', level_of.get(img_id)):
                    if lvl is not None:
                        confusion[lvl][index[gc], index[dc]] += 1
        acc = {}
        for lvl, mat in confusion.items():
            total = int(mat.sum())
            acc[str(lvl)] = dict(accuracy=float(np.trace(mat) / total) if total else None, n_matched=total)
        return dict(cultures=cultures, levels=acc, confusion={str(k): v.tolist() for k, v in confusion.items()})

    def compute_metrics(self, results: list) -> Dict[str, float]:
        logger: MMLogger = MMLogger.get_current_instance()
        gts, preds = zip(*results) if results else ((), ())
        if self.format_only or self.outfile_prefix:
            self.results2json(preds, self.outfile_prefix)
            if self.format_only:
                logger.info(f'results are saved in {self.outfile_prefix}')
                return OrderedDict()
        if self.cat_ids is None:
            self.cat_ids = self._label_cat_ids()
        if self.img_ids is None:
            self.img_ids = self._coco_api.get_img_ids()
        levels = self._level_images()
        classes = self._class_info()
        counts = {lvl: self._gt_counts(levels[lvl]) for lvl in LEVEL_KEYS}  # shared by bbox and segm
        tables = dict(classes=[c['name'] for c in classes], n_images={str(k): len(v) for k, v in levels.items()})
        flat = OrderedDict()
        for iou_type in self.metrics:
            if iou_type not in ('bbox', 'segm'):
                raise KeyError(f'DifficultyCocoMetric: metric {iou_type!r} not supported (bbox, segm)')
            dets = self._detections(preds, iou_type)
            if not dets:
                logger.warning(f'DifficultyCocoMetric: no {iou_type} predictions')
                tables[iou_type] = None
                continue
            coco_dt = self._coco_api.loadRes(dets)
            E = self._evaluate(coco_dt, iou_type, use_cats=True)
            t = self._iou_type_tables(E, levels, classes, counts)
            if self.class_agnostic:
                A = self._evaluate(coco_dt, iou_type, use_cats=False)
                t['agnostic'] = OrderedDict()
                for lvl in LEVEL_KEYS:
                    prec, rec = accumulate_subset(A, levels[lvl], with_recall=True)
                    t['agnostic'][str(lvl)] = dict(coco_stats(prec, A.params, rec),
                                                   **precision_at_score(A, levels[lvl]))
                if iou_type == 'segm' or 'segm' not in self.metrics:
                    dt_cat = {d['id']: d['category_id'] for d in coco_dt.anns.values()}
                    tables['culture'] = self._culture_accuracy(A, levels, classes, dt_cat)
            tables[iou_type] = t
            for lvl in LEVEL_KEYS:
                tag = '' if lvl == 'all' else f'L{lvl}_'
                for s in STAT_NAMES:
                    v = t['levels'][str(lvl)][s]
                    flat[f'{iou_type}_{tag}{s}'] = float('nan') if v is None else v
                if t['stock_max_dets']:
                    key = f"mAP_{t['stock_max_dets']}dets"
                    v = t['levels'][str(lvl)][key]
                    flat[f'{iou_type}_{tag}{key}'] = float('nan') if v is None else v
                v = t['levels'][str(lvl)]['AR_50']
                flat[f'{iou_type}_{tag}AR_50'] = float('nan') if v is None else v
                if self.class_agnostic:
                    for key in ('mAP', 'AR_50', 'precision_50'):
                        v = t['agnostic'][str(lvl)][key]
                        flat[f'{iou_type}_{tag}agnostic_{key}'] = float('nan') if v is None else v
        if 'culture' in tables:
            for lvl in LEVEL_KEYS:
                v = tables['culture']['levels'][str(lvl)]['accuracy']
                flat['culture_acc' if lvl == 'all' else f'L{lvl}_culture_acc'] = float('nan') if v is None else v
        if self.class_agnostic:
            tables['image_culture'] = self._image_culture_accuracy(preds, classes)
            v = tables['image_culture']['accuracy']
            flat['img_culture_acc'] = float('nan') if v is None else v
        self.last_tables = tables
        return flat
