# Copyright (c) mmstop contributors. All rights reserved.
"""Re-derive a config after its top-level variables were overridden.

mmstop's configs keep every quantity a user changes in one top-level variable
(``num_classes``, ``num_frames``, ``image_size``, ``classnames_file``,
``data_root``, ...) and derive the fields from it::

    num_classes = 4
    model = dict(cls_head=dict(num_classes=num_classes), ...)

MMEngine evaluates such references when it parses the file, and
``--cfg-options`` / :meth:`mmengine.config.Config.merge_from_dict` change the
parsed result afterwards, so ``num_classes=6`` alone would change the
top-level value but not the head. :func:`resolve_config` closes that gap: it
parses the config file again with the overridden variables assigned in every
file of its inheritance chain, so every field derived from them (directly or
through other variables) takes the new value, then re-applies every other
change the caller made. :class:`mmstop.engine.ResolvedConfigRunner` calls it
before building anything, so it works for ``tools/train.py``,
``tools/test.py``, MMAction2's own tools and ``mim train``.
"""
import ast
import contextlib
import logging
from typing import Any, Dict, Iterator, Optional, Tuple

from mmengine.config import Config
from mmengine.config import config as mmengine_config
from mmengine.config.utils import RemoveAssignFromAST
from mmengine.logging import print_log


def is_variable_value(value: Any) -> bool:
    """Whether a top-level value can act as a config variable.

    Variables hold ``None``, a bool, number or string, or a list/tuple of
    them (e.g. ``img_mean``); dicts and lists of dicts (``model``, pipelines)
    are config sections, whose changes are kept field by field instead.

    Args:
        value: A top-level config value.

    Returns:
        bool: True for a variable value.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_variable_value(v) for v in value)
    return False


def _literal(name: str, value: Any) -> ast.expr:
    """``value`` as an expression node, or a ValueError naming ``name``."""
    text = repr(value)
    try:
        same = ast.literal_eval(text) == value
    except (ValueError, SyntaxError):
        same = False
    if not same:
        raise ValueError(
            f'cannot assign the top-level config variable {name!r}: its '
            f'value {value!r} is not a Python literal')
    return ast.parse(text, mode='eval').body


class _AssignVariables(RemoveAssignFromAST):
    """MMEngine's ``_base_`` remover that also rewrites the module-level
    assignments ``name = ...`` of the given variables to their values."""

    def __init__(self, key: str, values: Dict[str, ast.expr]) -> None:
        super().__init__(key)
        self.values = values

    def visit_Module(self, node: ast.Module) -> ast.Module:
        node = self.generic_visit(node)
        for stmt in node.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
            elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                target = stmt.target
            else:
                continue
            if isinstance(target, ast.Name) and target.id in self.values:
                stmt.value = ast.copy_location(self.values[target.id],
                                               stmt.value)
        return node


@contextlib.contextmanager
def _assigned_variables(values: Dict[str, ast.expr]) -> Iterator[None]:
    """While active, MMEngine parses python configs with ``values``
    assigned. ``Config._file2dict`` strips ``_base_ = ...`` from every file
    of the chain with ``RemoveAssignFromAST``; for the duration of one parse
    that class is replaced by :class:`_AssignVariables` (restored after)."""
    if getattr(mmengine_config, 'RemoveAssignFromAST',
               None) is not RemoveAssignFromAST:
        raise RuntimeError(
            'mmstop cannot re-derive configs with this MMEngine: '
            'mmengine.config.config.RemoveAssignFromAST (MMEngine 0.10) is '
            'missing or already replaced')

    def transformer(key):
        return _AssignVariables(key, values)

    mmengine_config.RemoveAssignFromAST = transformer
    try:
        yield
    finally:
        mmengine_config.RemoveAssignFromAST = RemoveAssignFromAST


def parse_config(filename: str, variables: Dict[str, Any]) -> Config:
    """Parse a python config with some top-level variables set.

    Every module-level assignment ``name = <expr>`` of a name in
    ``variables``, in the file and in every ``_base_`` file it inherits, is
    replaced by ``name = <value>``; everything computed from those names is
    computed from the new values.

    Args:
        filename (str): A python config file (``_base_`` style).
        variables (dict): Top-level variable values (see
            :func:`is_variable_value`).

    Returns:
        Config: The parsed config.
    """
    values = {name: _literal(name, value) for name, value in variables.items()}
    with _assigned_variables(values):
        return Config.fromfile(filename)


def _keep_changes(original: Any, changed: Any, rederived: Any) -> Any:
    """``rederived`` with every difference of ``changed`` from ``original``.

    Dicts merge key by key (a key the caller removed stays removed, one it
    added is kept); lists and tuples of the same length element by element;
    anything else is the caller's value if it differs from the original,
    otherwise the re-derived one.
    """
    if changed == original:
        return rederived
    if (isinstance(changed, dict) and isinstance(original, dict)
            and isinstance(rederived, dict)):
        merged = {
            k: v
            for k, v in rederived.items() if k in changed or k not in original
        }
        for key, value in changed.items():
            if key in original and key in rederived:
                merged[key] = _keep_changes(original[key], value,
                                            rederived[key])
            else:
                merged[key] = value
        return merged
    if (isinstance(changed, (list, tuple)) and type(changed) is type(original)
            and type(changed) is type(rederived)
            and len(changed) == len(original) == len(rederived)):
        return type(changed)(_keep_changes(o, c, r)
                             for o, c, r in zip(original, changed, rederived))
    return changed


def changed_variables(cfg: Config) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The top-level variables of ``cfg`` that differ from its file.

    Args:
        cfg (Config): A config read with :meth:`Config.fromfile`, possibly
            modified since.

    Returns:
        tuple[dict, dict]: ``(changed, original)``: the changed variables
        with their current values, and the whole config as the file gives
        it (plain dicts).
    """
    original = Config.fromfile(cfg.filename).to_dict()
    current = cfg.to_dict()
    changed = {
        key: value
        for key, value in current.items() if key in original
        and is_variable_value(original[key]) and value != original[key]
    }
    return changed, original


def resolve_config(cfg: Config) -> Config:
    """Re-derive ``cfg`` from its overridden top-level variables.

    ``cfg`` is compared with a fresh parse of ``cfg.filename``. When
    top-level variables differ (see :func:`is_variable_value`), the file is
    parsed again with those values (:func:`parse_config`), so every field
    derived from them follows, and every other difference of ``cfg`` from
    the file (``--cfg-options`` on nested keys, the tools' own settings such
    as ``work_dir``) is applied on top: a field set explicitly keeps its
    value. A field explicitly set to its value in the file is
    indistinguishable from an untouched one and follows the variables.

    Configs without a python file (built from a dict) are returned
    unchanged, and so are lazy-import (``read_base``) configs, with a warning
    if their variables changed.

    Args:
        cfg (Config): The config, typically after ``merge_from_dict``.

    Returns:
        Config: ``cfg`` itself if no field derives from a changed variable,
        else the re-derived config (same ``filename``); the re-derived
        fields are logged.

    Raises:
        ValueError: If a changed variable's value is not a Python literal.
    """
    filename = getattr(cfg, 'filename', None)
    if not filename or not filename.endswith('.py'):
        return cfg
    changed, original = changed_variables(cfg)
    if not changed:
        return cfg
    names = ', '.join(f'{k}={v!r}' for k, v in sorted(changed.items()))
    if Config._is_lazy_import(filename):
        print_log(
            f'{filename} is a lazy-import config: the fields derived from '
            f'{names} keep their parsed values',
            logger='current',
            level=logging.WARNING)
        return cfg
    rederived = parse_config(filename, changed).to_dict()
    current = cfg.to_dict()
    merged = _keep_changes(original, current, rederived)
    fields = _differences(current, merged)
    if not fields:
        return cfg
    shown = ', '.join(fields[:8]) + (', ...' if len(fields) > 8 else '')
    print_log(
        f're-derived {len(fields)} config field(s) from the top-level '
        f'variables {names}: {shown}',
        logger='current')
    return Config(merged, filename=filename)


def load_config(filename: str,
                cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    """Read a config and apply command-line overrides, as the tools do.

    Args:
        filename (str): The config file.
        cfg_options (dict, optional): ``--cfg-options`` (dotted keys); the
            fields derived from an overridden top-level variable are
            re-derived (:func:`resolve_config`). Defaults to None.

    Returns:
        Config: The config.
    """
    cfg = Config.fromfile(filename)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        cfg = resolve_config(cfg)
    return cfg


def _differences(a: Any, b: Any, prefix: str = '') -> list:
    """Dotted keys (``--cfg-options`` style) where ``a`` and ``b`` differ."""
    if a == b:
        return []
    if isinstance(a, dict) and isinstance(b, dict):
        return [
            path for key in list(a) + [k for k in b if k not in a]
            for path in _differences(
                a.get(key), b.get(key), f'{prefix}{key}.')
        ]
    if (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
            and len(a) == len(b)):
        return [
            path for i, (x, y) in enumerate(zip(a, b))
            for path in _differences(x, y, f'{prefix}{i}.')
        ]
    return [prefix[:-1]]
