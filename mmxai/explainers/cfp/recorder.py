"""Forward hooks that record what Class Feature Pyramids walk back over."""
from typing import Any, Dict, List

from torch import Tensor, nn


class Recorder:
    """Forward hooks on every conv, the head and the classifier (removed by
    :meth:`remove`).

    Attributes:
        inputs: conv name -> its inputs, one per call.
        order: conv names in the order of their first call.
        markers: autograd node of each conv output -> conv name.
        modules: conv name -> the conv.
        head_in: the head's first input, per call.
        fc_in: the classifier's input, per call.
    """

    def __init__(self, model: nn.Module, classifier: nn.Module):
        self.inputs: Dict[str, List[Tensor]] = {}
        self.order: List[str] = []
        self.markers: Dict[Any, str] = {}
        self.modules: Dict[str, nn.Module] = {}
        self.head_in: List = []
        self.fc_in: List[Tensor] = []
        self.handles = []
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                self.modules[name] = m
                self.handles.append(m.register_forward_hook(
                    lambda mod, args, out, n=name: self._conv(n, args, out)))
        head = model.cls_head
        self.handles.append(head.register_forward_pre_hook(
            lambda mod, args: self.head_in.append(args[0])))
        self.handles.append(classifier.register_forward_pre_hook(
            lambda mod, args: self.fc_in.append(args[0])))

    def _conv(self, name: str, args, out: Tensor) -> None:
        if name not in self.inputs:
            self.inputs[name] = []
            self.order.append(name)
        self.inputs[name].append(args[0])
        if out.grad_fn is not None:
            self.markers[out.grad_fn] = name

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()
