"""Random generator states in every checkpoint, restored on resume: bit-exact continuation."""
import random
from typing import Optional

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.logging import print_log


def get_rng_states() -> dict:
    """This process's python/numpy/torch (and CUDA) generator states."""
    states = dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Inverse of :func:`get_rng_states`."""
    random.setstate(states['python'])
    np.random.set_state(states['numpy'])
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save the training process's generator states with each checkpoint and restore them on resume.

    mmengine restores weights, optimizer, scheduler and iteration but re-seeds the generators, so the
    RPN/RoI samplers (``torch.randperm``) of a resumed run draw other proposals than the
    uninterrupted run and the weights drift apart. The states are taken when the checkpoint is saved
    (after iteration k) and put back right before iteration k+1 of the resumed run, after mmengine
    has replayed the data loader (data order and augmentation replay on their own: the sampler and
    the worker/pipeline generators are seeded from the run's seed). Validation is made neutral (the
    states are restored after it), so an evaluation between two iterations changes nothing either.
    Single-process runs only: a multi-process (DDP) run resumes with re-seeded generators (logged).
    """

    priority = 'VERY_HIGH'

    def __init__(self):
        self._pending: Optional[dict] = None
        self._before_val: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Runner.save_checkpoint runs on rank 0 only, so only its states can be stored here (a
        # collective would hang); a multi-process run resumes with re-seeded generators (logged).
        checkpoint['rng_states'] = [get_rng_states()]
        checkpoint['rng_states_world_size'] = get_world_size()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not runner._resume:
            return
        saved = checkpoint.get('rng_states')
        if saved and checkpoint.get('rng_states_world_size', 1) != len(saved):
            saved = None  # saved by a multi-process run: rank 0's states only
        if not saved:
            print_log('resume: the checkpoint holds no generator states for this run (saved before '
                      'they were recorded, or by a multi-process run): the run continues, but not '
                      'bit-exactly', logger='current')
        elif len(saved) != get_world_size():
            print_log(f'resume: the checkpoint holds generator states of {len(saved)} process(es), this '
                      f'run has {get_world_size()}: the run continues, but not bit-exactly',
                      logger='current')
        else:
            self._pending = saved[get_rank()]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self._pending is not None:
            set_rng_states(self._pending)
            self._pending = None

    def before_val(self, runner) -> None:
        self._before_val = get_rng_states()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            set_rng_states(self._before_val)
            self._before_val = None
