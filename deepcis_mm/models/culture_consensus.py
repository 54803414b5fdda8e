"""Image-level culture consensus: an EVICAN image holds one culture, so its detections vote for it."""
from typing import Dict, Sequence, Tuple

import torch
from mmcv.ops import batched_nms
from mmengine.structures import InstanceData


def consensus_labels(labels: torch.Tensor, scores: torch.Tensor, label_cultures: Sequence,
                     label_kinds: Sequence) -> Tuple[torch.Tensor, object]:
    """Relabel every detection to the culture with the largest summed score, keeping its kind.

    Returns (new labels, winning culture). A detection whose kind has no class in the winning culture
    keeps its label.
    """
    if len(labels) == 0:
        return labels, None
    votes: Dict[object, float] = {}
    for lab, score in zip(labels.tolist(), scores.tolist()):
        votes[label_cultures[lab]] = votes.get(label_cultures[lab], 0.0) + score
    winner = max(votes, key=lambda c: (votes[c], str(c)))  # ties: a fixed, name-based order
    target = {(c, k): i for i, (c, k) in enumerate(zip(label_cultures, label_kinds))}
    new = [target.get((winner, label_kinds[lab]), lab) for lab in labels.tolist()]
    return labels.new_tensor(new), winner


def apply_culture_consensus(results: InstanceData, metainfo: dict, nms_cfg: dict) -> InstanceData:
    """Consensus relabelling of one image's detections, then class-wise NMS again (two detections of
    one object under different cultures become duplicates once they share a label)."""
    if 'label_cultures' not in metainfo or 'label_kinds' not in metainfo:
        raise ValueError('culture_consensus needs "label_cultures" and "label_kinds" in the image meta: '
                         'use EvicanDataset and add both to PackDetInputs.meta_keys of the test pipeline')
    if len(results) == 0:
        return results
    labels, _ = consensus_labels(results.labels, results.scores, metainfo['label_cultures'],
                                 metainfo['label_kinds'])
    _, keep = batched_nms(results.bboxes, results.scores, labels, nms_cfg)
    results = results[keep]
    results.labels = labels[keep]
    return results
