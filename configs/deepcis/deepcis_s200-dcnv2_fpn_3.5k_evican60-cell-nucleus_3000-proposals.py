# The authors' test-time setting: 3,000 RPN proposals per image (made for LIVECell's dense fields). The
# default of 300 gives the same AP on the synthetic eval (densest image: 64 objects) at a third of the
# CPU time (docs/benchmarks.md, "Test-time proposal count"); use this for fields with more than ~60 objects.
_base_ = './deepcis_s200-dcnv2_fpn_3.5k_evican60-cell-nucleus.py'
model = dict(test_cfg=dict(rpn=dict(max_per_img=3000)))
