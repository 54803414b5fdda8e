# Partial annotation, remedy "ignore regions" (docs/partial_annotation.md): likely-unannotated cells of
# each train image (its cell-covered area estimated from the image, minus the annotated objects) become
# ignored instances (UnannotatedForegroundToIgnore); the RPN and RoI assigners skip anchors/RoIs that lie
# mostly (IoF > ignore_iof_thr) inside them instead of counting them as background (mmdet's ignore_iof_thr).
# The same delta applies to any DeepCIS config: change _base_.
_base_ = '../deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'
custom_imports = dict(imports=['deepcis_mm'], allow_failed_imports=False)

ignore_iof_thr = 0.5
train_dataloader = dict(dataset=dict(pipeline=[
    s for step in _base_.train_pipeline
    for s in ([step, dict(type='UnannotatedForegroundToIgnore')] if step['type'] == 'LoadAnnotations' else [step])
]))
model = dict(train_cfg=dict(
    rpn=dict(assigner=dict(ignore_iof_thr=ignore_iof_thr)),
    rcnn=[dict(stage, assigner=dict(stage['assigner'], ignore_iof_thr=ignore_iof_thr))
          for stage in _base_.model.train_cfg.rcnn]))
