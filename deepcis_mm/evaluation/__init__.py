from .difficulty_coco_metric import DifficultyCocoMetric, accumulate_subset, coco_stats
from .fast_cocoeval import FastCOCOeval

__all__ = ['DifficultyCocoMetric', 'FastCOCOeval', 'accumulate_subset', 'coco_stats']
