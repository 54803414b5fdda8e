"""Where the time goes: forward time per model component (:class:`ForwardTimer`) and FLOPs per run
(:class:`FlopCount`), for the speed benchmark."""
import resource
import time
from typing import Dict

import torch


def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def peak_mib(device: str) -> float:
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# components timed by forward hooks (seconds per run, forward only); the rest of a run is backward and
# optimizer step (training) or proposal/detection post-processing and mask pasting (inference)
COMPONENTS = (('backbone', 'backbone'), ('neck', 'neck'), ('rpn_head', 'RPN head'),
              ('roi_head.bbox_roi_extractor', 'box RoIAlign'), ('roi_head.bbox_head', 'box heads'),
              ('roi_head.mask_roi_extractor', 'mask RoIAlign'), ('roi_head.mask_head', 'mask heads'))


class ForwardTimer:
    """Accumulates the forward time of the model's components (:data:`COMPONENTS`) via hooks."""

    def __init__(self, model, device: str):
        self.device, self.total, self._start = device, {}, {}
        for path, name in COMPONENTS:
            module = model
            for attr in path.split('.'):
                module = getattr(module, attr, None)
            if module is None or (path == 'roi_head.mask_roi_extractor' and module is
                                  getattr(model.roi_head, 'bbox_roi_extractor', None)):
                continue  # absent, or the mask branch shares the box RoIAlign module
            for m in module if isinstance(module, torch.nn.ModuleList) else [module]:
                m.register_forward_pre_hook(self._pre(name, id(m)))
                m.register_forward_hook(self._post(name, id(m)))

    def _pre(self, name, key):
        def hook(module, inputs):
            sync(self.device)
            self._start[key] = time.perf_counter()
        return hook

    def _post(self, name, key):
        def hook(module, inputs, output):
            sync(self.device)
            self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - self._start.pop(key)
        return hook

    def take(self) -> Dict[str, float]:
        out, self.total = self.total, {}
        return out


class FlopCount:
    """FLOPs of the code run inside ``with FlopCount(model, backward) as fc`` (then ``fc.total``):
    torch's ``FlopCounterMode`` (matmuls and convolutions, forward and backward) plus mmcv's DCNv2, a
    compiled op torch cannot see, counted by hooks as a convolution (backward = 2x forward).
    RoIAlign, NMS and element-wise ops are not counted (small next to the convolutions)."""

    def __init__(self, model, backward: bool):
        from mmcv.ops import ModulatedDeformConv2d
        self.dcn = [m for m in model.modules() if isinstance(m, ModulatedDeformConv2d)]
        self.backward, self.dcn_flops, self._hooks, self.total = backward, 0, [], None

    def _hook(self, module, inputs, output):
        kh, kw = module.kernel_size
        self.dcn_flops += 2 * output.numel() * module.in_channels // module.groups * kh * kw

    def __enter__(self):
        from torch.utils.flop_counter import FlopCounterMode
        self._hooks = [m.register_forward_hook(self._hook) for m in self.dcn]
        self._mode = FlopCounterMode(display=False)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc):
        self._mode.__exit__(*exc)
        for h in self._hooks:
            h.remove()
        self.total = self._mode.get_total_flops() + self.dcn_flops * (3 if self.backward else 1)
