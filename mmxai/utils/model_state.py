"""Leave the model as it was found: mode, hooks, head settings, gradients."""
import contextlib
from typing import Iterator

from torch import nn

_HOOK_DICTS = ('_forward_hooks', '_forward_pre_hooks', '_backward_hooks',
               '_backward_pre_hooks', '_forward_hooks_with_kwargs',
               '_forward_pre_hooks_with_kwargs', '_forward_hooks_always_called',
               '_state_dict_hooks', '_load_state_dict_pre_hooks')
_HEAD_ATTRS = ('average_clips', )


@contextlib.contextmanager
def preserved_model_state(model: nn.Module) -> Iterator[nn.Module]:
    """Restore ``model`` on exit, also when the body raises.

    Restored: every module's ``training`` flag; hooks added to any module
    (entries absent on entry are removed); ``cls_head.average_clips``;
    parameters' ``requires_grad`` and ``.grad``.
    """
    modules = list(model.modules())
    training = [m.training for m in modules]
    # only the hook dicts that hold entries on entry are recorded; on exit
    # a dict that was empty is cleared, the others lose the keys they gained
    hook_keys = []
    for m in modules:
        d = m.__dict__
        hook_keys.append({k: tuple(d[k]) for k in _HOOK_DICTS if d.get(k)})
    params = list(model.parameters())
    requires_grad = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    head = getattr(model, 'cls_head', None)
    head_attrs = {a: getattr(head, a) for a in _HEAD_ATTRS
                  if head is not None and hasattr(head, a)}
    try:
        yield model
    finally:
        for m, flag, keys in zip(modules, training, hook_keys):
            d = m.__dict__
            if d.get('training') is not flag:
                d['training'] = flag  # a plain attribute: no __setattr__
            for name in _HOOK_DICTS:
                hooks = d.get(name)
                if not hooks:
                    continue
                before = keys.get(name)
                if before is None:
                    hooks.clear()
                elif len(hooks) != len(before) or tuple(hooks) != before:
                    keep = set(before)
                    for k in [k for k in hooks if k not in keep]:
                        del hooks[k]
        for p, flag, g in zip(params, requires_grad, grads):
            if p.requires_grad is not flag:
                p.requires_grad_(flag)
            if p.grad is not g:
                p.grad = g
        for a, v in head_attrs.items():
            setattr(head, a, v)
