# Partial annotation, remedy "negatives from known background" (docs/partial_annotation.md): the same
# ignore regions as the ignore-unannotated config (UnannotatedForegroundToIgnore), but the RPN and RoI
# assigners (KnownBackgroundAssigner) keep positives as upstream and accept a negative only if at most
# max_unknown_frac of its box lies on those regions' pixels, so background examples are drawn only from
# known background. The same delta applies to any DeepCIS config: change _base_.
_base_ = '../deepcis/deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'
custom_imports = dict(imports=['deepcis_mm'], allow_failed_imports=False)

max_unknown_frac = 0.1
train_dataloader = dict(dataset=dict(pipeline=[
    s for step in _base_.train_pipeline
    for s in ([step, dict(type='UnannotatedForegroundToIgnore')] if step['type'] == 'LoadAnnotations' else [step])
]))
model = dict(train_cfg=dict(
    rpn=dict(assigner=dict(type='KnownBackgroundAssigner', max_unknown_frac=max_unknown_frac)),
    rcnn=[dict(stage, assigner=dict(stage['assigner'], type='KnownBackgroundAssigner',
                                    max_unknown_frac=max_unknown_frac))
          for stage in _base_.model.train_cfg.rcnn]))
