"""Image-level culture consensus: an EVICAN image holds one culture, so its detections vote for it.

One implementation, used by :class:`~deepcis_mm.models.LastStageMaskCascadeRoIHead` (the test-time
option ``test_cfg.rcnn.culture_consensus``), the Predictor (after its tiles are merged) and the
accuracy benchmark (post hoc, for stock heads). The class table (culture and kind of every label) is
given once, from ``model.dataset_meta`` (:func:`~deepcis_mm.datasets.categories.class_table`).
"""
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmcv.ops import batched_nms
from mmengine.structures import InstanceData

ClassTable = Tuple[Sequence, Sequence]  # (culture of each label, kind of each label)


def consensus_labels(labels: torch.Tensor, scores: torch.Tensor, cultures: Sequence,
                     kinds: Sequence, culture: Optional[object] = None) -> Tuple[torch.Tensor, object]:
    """Relabel every detection to the culture with the largest summed score, keeping its kind.

    ``culture``: relabel to this culture instead of the vote's winner (e.g. the ground truth's, for
    the ceiling of any image-level culture decision). Returns (new labels, winning culture). A
    detection whose kind has no class in the winning culture keeps its label.
    """
    if len(labels) == 0:
        return labels, culture
    if culture is not None:
        winner = culture
    else:
        votes: Dict[object, float] = {}
        for lab, score in zip(labels.tolist(), scores.tolist()):
            votes[cultures[lab]] = votes.get(cultures[lab], 0.0) + score
        winner = max(votes, key=lambda c: (votes[c], str(c)))  # ties: a fixed, name-based order
    target = {(c, k): i for i, (c, k) in enumerate(zip(cultures, kinds))}
    new = [target.get((winner, kinds[lab]), lab) for lab in labels.tolist()]
    return labels.new_tensor(new), winner


def culture_consensus(bboxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor,
                      table: ClassTable, nms_cfg: dict, culture: Optional[object] = None
                      ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Consensus relabelling of one image's detections (to ``culture`` if given), then class-wise NMS
    again (two detections of one object under different cultures become duplicates once they share a
    label).

    Returns (indices of the kept detections, their new labels)."""
    if len(labels) == 0:
        return torch.zeros(0, dtype=torch.long, device=labels.device), labels
    new, _ = consensus_labels(labels, scores, *table, culture=culture)
    _, keep = batched_nms(bboxes, scores, new, nms_cfg)
    return keep, new[keep]


def apply_culture_consensus(results: InstanceData, table: ClassTable, nms_cfg: dict,
                            culture: Optional[object] = None) -> InstanceData:
    """:func:`culture_consensus` on mmdet's per-image results (``pred_instances``)."""
    if len(results) == 0:
        return results
    keep, labels = culture_consensus(results.bboxes, results.scores, results.labels, table, nms_cfg,
                                     culture=culture)
    results = results[keep]
    results.labels = labels
    return results
