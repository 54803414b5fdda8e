# Runtime of the CPU demo-scale configs: the default runtime (custom_imports, AP tables) with one
# checkpoint at the end of schedules/demo_450it.py (its max_iters) instead of the paper's milestones,
# a log line every 20 iterations and a fixed seed (reruns of `make demo` give the same numbers on one
# CPU model).
_base_ = './default_runtime.py'

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(milestones=None, interval=450, max_keep_ckpts=2))
randomness = dict(seed=0)
