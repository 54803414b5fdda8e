from .difficulty_coco_metric import DifficultyCocoMetric, accumulate_subset, coco_stats

__all__ = ['DifficultyCocoMetric', 'accumulate_subset', 'coco_stats']
