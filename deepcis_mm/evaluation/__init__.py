from .compare_runs import CompareError, collect_runs, compare_runs
from .difficulty_coco_metric import (DifficultyCocoMetric, accumulate_subset, category_index, coco_stats,
                                     summary_max_dets)
from .fast_cocoeval import FastCOCOeval
from .image_ap import image_ap50

__all__ = ['DifficultyCocoMetric', 'FastCOCOeval', 'accumulate_subset', 'category_index', 'coco_stats',
           'summary_max_dets', 'CompareError', 'collect_runs', 'compare_runs', 'image_ap50']
