"""A generator of its own for data augmentation run in the training process (``num_workers=0``)."""
import contextlib
import random
from typing import Optional

import numpy as np
import torch


class PipelineRNG:
    """Swap in the pipeline's own python/numpy/torch generator states around one sample.

    With data-loader workers, augmentations draw from the worker's generators, seeded from the run's
    seed (mmengine's ``worker_init_fn``) and used by nothing else, so mmengine's resume (which replays
    the skipped batches through fresh workers) reproduces them. With ``num_workers=0`` the pipeline
    would share the main process's generators with the model (RPN/RoI samplers), and the replay on
    resume would shift both; this gives it a separate stream, seeded lazily on first use from
    ``torch.initial_seed()`` (the run's seed) and the rank, advanced only by the samples it prepares.
    Inside a worker it does nothing, so runs with workers draw exactly what they drew before.
    """

    def __init__(self):
        self._states: Optional[tuple] = None

    def _seed(self):
        from mmengine.dist import get_rank
        seed = int(np.random.SeedSequence([torch.initial_seed() % 2**63, get_rank(), 0x9E3779B9])
                   .generate_state(1)[0])
        rs = np.random.RandomState(seed)
        gen = torch.Generator().manual_seed(seed)
        py = random.Random(seed)
        self._states = (py.getstate(), rs.get_state(), gen.get_state())

    @contextlib.contextmanager
    def active(self):
        """Run the body with the pipeline's states in the global generators, then put them back."""
        if torch.utils.data.get_worker_info() is not None:
            yield
            return
        if self._states is None:
            self._seed()
        outer = (random.getstate(), np.random.get_state(), torch.get_rng_state())
        random.setstate(self._states[0])
        np.random.set_state(self._states[1])
        torch.set_rng_state(self._states[2])
        try:
            yield
        finally:
            self._states = (random.getstate(), np.random.get_state(), torch.get_rng_state())
            random.setstate(outer[0])
            np.random.set_state(outer[1])
            torch.set_rng_state(outer[2])

    def __getstate__(self):
        return {'_states': None}  # a worker copy starts unseeded (and never uses it)
