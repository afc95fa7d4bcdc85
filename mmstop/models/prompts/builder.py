# Copyright (c) mmstop contributors. All rights reserved.
"""Build a prompt module from ``dict(mode=..., **options)`` or
``dict(type=..., **options)``."""
import inspect
from typing import Dict, Optional

import torch.nn as nn

from mmstop.registry import MODELS


def _options(cls: type) -> set:
    """Names of the constructor arguments of ``cls``."""
    return {
        name
        for name in inspect.signature(cls.__init__).parameters
        if name != 'self'
    }


def build_mode_module(kind: str,
                      cfg: Optional[dict],
                      classes: Dict[str, str],
                      default_mode: str = 'official',
                      base: Optional[type] = None,
                      **defaults) -> Optional[nn.Module]:
    """Build the registered class that implements ``cfg['mode']``.

    Options both modes take go to the chosen mode; an option of another mode
    only raises a ``TypeError`` naming that mode (mmstop's configs leave such
    options at their defaults, so ``mode=...`` alone switches modes).

    Args:
        kind (str): Name of the config field, used in error messages.
        cfg (dict, optional): ``dict(mode=..., **options)``, or
            ``dict(type=..., **options)`` for any registered class (or a
            class) implementing ``base``, e.g. a prompt variant of one's own;
            ``None`` disables the module and returns ``None``.
        classes (dict): Maps each mode to a registered class name.
        default_mode (str): Mode used when ``cfg`` has neither. Defaults to
            ``'official'``.
        base (type, optional): The interface the built module must
            implement. Defaults to None (any class).
        **defaults: Values known to the caller (sizes); they fill the options
            that the class accepts and the config does not set.

    Returns:
        nn.Module | None: The built module.

    Raises:
        TypeError: For an option the mode's class does not take, naming the
            other mode it belongs to, if any; for a class that does not
            implement ``base``.
    """
    if cfg is None:
        return None
    cfg = dict(cfg)
    if 'type' in cfg:
        if 'mode' in cfg:
            raise ValueError(f'{kind}: give mode or type, not both')
        cls = cfg.pop('type')
        if isinstance(cls, str):
            name, cls = cls, MODELS.get(cls)
            if cls is None:
                raise KeyError(f'{kind} type {name!r} is not registered')
    else:
        cls = _mode_class(kind, cfg, classes, default_mode)
    if base is not None and not (isinstance(cls, type)
                                 and issubclass(cls, base)):
        raise TypeError(f'{kind} must be a {base.__name__} (the interface '
                        f'the backbone calls), got {cls!r}')
    accepted = _options(cls)
    for key, value in defaults.items():
        if key in accepted:
            cfg.setdefault(key, value)
    return cls(**cfg)


def _mode_class(kind: str, cfg: dict, classes: Dict[str, str],
                default_mode: str) -> type:
    """Pop ``mode`` from ``cfg`` and return its class, after checking that
    ``cfg`` holds only options of that class (see :func:`build_mode_module`).
    """
    mode = cfg.pop('mode', default_mode)
    if mode not in classes:
        raise ValueError(
            f'{kind} mode must be one of {sorted(classes)}, got {mode!r}')
    cls = MODELS.get(classes[mode])
    if cls is None:
        raise NotImplementedError(f'{kind} mode {mode!r} is not available')
    accepted = _options(cls)
    unknown = sorted(set(cfg) - accepted)
    if unknown:
        others = {
            other: _options(MODELS.get(name))
            for other, name in classes.items()
            if other != mode and MODELS.get(name) is not None
        }
        stray = [
            k for k in unknown
            if not any(k in opts for opts in others.values())
        ]
        if stray:
            raise TypeError(
                f'unknown {kind} option(s) {stray} for mode {mode!r} (no '
                f'mode takes them); expected a subset of {sorted(accepted)}')
        owners = sorted(o for o, opts in others.items() if set(unknown) & opts)
        raise TypeError(
            f'{kind} option(s) {unknown} belong to mode '
            f'{" / ".join(map(repr, owners))}, '
            f'not {mode!r}: drop them when switching modes (in a config: '
            f"{kind}=dict(_delete_=True, mode={mode!r}, ...)); mode {mode!r} "
            f'takes {sorted(accepted)}')
    return cls
