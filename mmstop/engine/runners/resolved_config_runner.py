# Copyright (c) mmstop contributors. All rights reserved.
"""The runner of mmstop's configs: re-derived config, checked class counts."""
import os.path as osp
from collections import Counter
from typing import List, Optional, Tuple

from mmengine.config import Config
from mmengine.runner import Runner

from mmstop.registry import RUNNERS
from mmstop.utils.config import resolve_config

_LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _count_names(path: str) -> Optional[int]:
    """Lines of a class-name file; None if it cannot be read yet (the head
    or dataset that reads it reports that with its own error)."""
    from mmstop.datasets.video_cls_dataset import load_class_names
    try:
        return len(load_class_names(path))
    except (OSError, ValueError):
        return None


def class_counts(cfg) -> List[Tuple[str, int, str]]:
    """Every class count a config declares, with the key declaring it.

    Looked at: the top-level variable ``num_classes`` (when an integer),
    the head's ``num_classes`` and ``class_names`` (a list or a
    class-name file), the ``num_classes`` of the data preprocessor's
    blending augments (MMAction2's Mixup/CutMix, also inside
    ``RandomBatchAugment``), and each dataloader's dataset (and wrapped
    ``dataset``) ``num_classes``, ``classnames_file`` and
    ``metainfo['classes']``. Class-name files that do not exist (yet) are
    skipped.

    Args:
        cfg (Config | dict): A full config.

    Returns:
        list[tuple[str, int, str]]: ``(key, count, note)``, keys written as
        for ``--cfg-options``, the note naming the augment type (or empty).
    """
    counts = []

    def add(key, value, note=''):
        if value is not None:
            counts.append((key, value, note))

    if isinstance(cfg.get('num_classes'), int):
        add('num_classes', cfg['num_classes'])
    model = cfg.get('model') or {}
    head = model.get('cls_head') or {}
    add('model.cls_head.num_classes', head.get('num_classes'))
    names = head.get('class_names')
    if isinstance(names, str):
        add('model.cls_head.class_names', _count_names(names))
    elif isinstance(names, (list, tuple)):
        add('model.cls_head.class_names', len(names))
    blending = (model.get('data_preprocessor') or {}).get('blending') or {}
    prefix = 'model.data_preprocessor.blending'
    if 'augments' in blending:
        for i, augment in enumerate(blending['augments']):
            add(f'{prefix}.augments.{i}.num_classes',
                augment.get('num_classes'), f" ({augment.get('type')})")
    else:
        add(f'{prefix}.num_classes', blending.get('num_classes'),
            f" ({blending.get('type')})")
    for loader in _LOADERS:
        key, dataset = f'{loader}.dataset', (cfg.get(loader) or {})
        dataset = dataset.get('dataset')
        while isinstance(dataset, dict):
            add(f'{key}.num_classes', dataset.get('num_classes'))
            path = dataset.get('classnames_file')
            if path is not None:
                root = dataset.get('data_root') or ''
                add(f'{key}.classnames_file',
                    _count_names(osp.join(root, path)))
            classes = (dataset.get('metainfo') or {}).get('classes')
            if isinstance(classes, (list, tuple)):
                add(f"{key}.metainfo['classes']", len(classes))
            key, dataset = f'{key}.dataset', dataset.get('dataset')
    return counts


def check_class_counts(cfg) -> None:
    """Raise if the config's class counts (:func:`class_counts`) disagree.

    A head, a Mixup/CutMix augment and a dataset that count classes
    differently otherwise fail late and obscurely (torch's ``Class values
    must be smaller than num_classes`` from the label one-hot) or not at all
    (a head with unused outputs).

    Args:
        cfg (Config | dict): A full config.

    Raises:
        ValueError: Naming a key whose count differs from the most common
            one and a key with that one, and listing every count.
    """
    found = class_counts(cfg)
    values = [value for _, value, _ in found]
    if len(set(values)) < 2:
        return
    majority = Counter(values).most_common(1)[0][0]
    text = [f'{key}={value}{note}' for key, value, note in found]
    odd = [i for i, value in enumerate(values) if value != majority]
    agree = values.index(majority)
    if [found[i][0] for i in odd] == ['num_classes']:
        hint = ('a config file that sets num_classes must re-assign the '
                'fields that use it (MMEngine evaluates them when it parses '
                'each file), while --cfg-options num_classes=N re-derives '
                'them all')
    else:
        hint = ('set the top-level num_classes / classnames_file of the '
                'config, from which they all derive')
    raise ValueError(
        f'class counts disagree: {text[odd[0]]} but {text[agree]}. Every '
        f"class count must be the same ({', '.join(text)}); {hint}")


@RUNNERS.register_module()
class ResolvedConfigRunner(Runner):
    """MMEngine's ``Runner`` for mmstop's configs (``runner_type``).

    :meth:`from_cfg` first re-derives the config from its overridden
    top-level variables (:func:`mmstop.utils.config.resolve_config`: with
    ``--cfg-options num_classes=6`` the head, Mixup/CutMix and datasets all
    get 6 classes) and checks that every class count in it agrees
    (:func:`check_class_counts`), then builds the runner as MMEngine does.
    Tools reach it through ``RUNNERS.build(cfg)`` (``tools/train.py``,
    ``tools/test.py``, MMAction2's tools, ``mim train``); MMEngine's
    ``Runner.from_cfg`` and the constructor skip both steps.

    The constructor's arguments are those of :class:`mmengine.runner.Runner`.
    """

    @classmethod
    def from_cfg(cls, cfg) -> 'ResolvedConfigRunner':
        """Build a runner from the re-derived, checked config.

        Args:
            cfg (Config | dict): The config; only a :class:`Config` read
                from a file can be re-derived.

        Returns:
            ResolvedConfigRunner: The runner.
        """
        if isinstance(cfg, Config):
            cfg = resolve_config(cfg)
        check_class_counts(cfg)
        return super().from_cfg(cfg)
