# Copyright (c) mmstop contributors. All rights reserved.
"""Reading checkpoints safely and loading them strictly.

Every checkpoint, converter input and features file mmstop reads goes
through :func:`safe_torch_load`: ``torch.load(weights_only=True)`` with the
types MMEngine checkpoints hold allow-listed for that call only (the
``torch.serialization.safe_globals`` context, no process-wide change):

* ``mmengine.logging.HistoryBuffer`` (the message hub's log scalars);
* numpy arrays, scalars and dtypes (``_reconstruct``, ``ndarray``,
  ``scalar``, ``dtype`` and the ``numpy.dtypes`` classes, under their
  numpy 1 and numpy 2 module names);
* ``argparse.Namespace`` (the ``args`` entry of official training
  checkpoints).

``builtins.getattr`` is **not** allow-listed: it would let a file fetch any
attribute of any allowed object. MMEngine checkpoints still contain that
global, because ``HistoryBuffer.__getstate__`` pickles its class-level
statistics methods (``getattr(HistoryBuffer, 'min')`` under pickle
protocol 2). The name ``builtins.getattr`` is therefore bound to
:func:`_history_buffer_statistic`, which only returns
``HistoryBuffer.min`` / ``max`` / ``current`` / ``mean`` and refuses
everything else. Checkpoints written by MMEngine (with or without mmstop)
load unchanged and nothing in them can call other code.

TorchScript archives (OpenAI's CLIP ``.pt`` files) are read by
:func:`read_torchscript_state_dict`, which unpickles their tensors and module
attributes with an allow-list of its own and never runs their code
(``torch.jit.load`` does, and ``torch.load`` refuses them under
``weights_only=True``).

A file that needs more (any other class or function) is refused with
:class:`UnsafeCheckpointError` naming the globals it asks for. Full
unpickling, which runs whatever code the file contains, is only done on
request: the ``unsafe://`` prefix (``load_from='unsafe://path.pth'``,
``tools/test.py CONFIG unsafe://path.pth``, ``pretrained=...``) or the
converters' ``--unsafe-load`` flag.

:func:`load_state_dict_checked` loads a state dict and fails with
:class:`CheckpointMismatchError` naming every missing, unexpected and
mis-shaped key, unless the key matches one of the allowed patterns.
:func:`find_resumable_checkpoint` picks the newest intact checkpoint of a
work directory for ``--resume``.
"""
import argparse
import ast
import os
import os.path as osp
import pickle
import re
import sys
import zipfile
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import print_log
from torch import nn

#: Prefix of a checkpoint path that asks for full (unsafe) unpickling.
UNSAFE_PREFIX = 'unsafe://'

#: ``HistoryBuffer`` statistics methods a checkpoint may reference.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be used; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint needs globals outside the allow-list to be unpickled."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint file is truncated or otherwise unreadable."""


class CheckpointMismatchError(CheckpointError):
    """A state dict does not match the model it is loaded into."""


def _history_buffer_statistic(owner, name: str):
    """Stand-in for ``builtins.getattr`` while unpickling a checkpoint.

    Only resolves the default statistics methods of ``HistoryBuffer``.

    Raises:
        pickle.UnpicklingError: Any other object or attribute.
    """
    from mmengine.logging import HistoryBuffer
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed: only the '
        f'HistoryBuffer statistics methods {_HISTORY_BUFFER_STATISTICS} may '
        'be looked up')


def _numpy_globals() -> List[Union[type, Tuple[object, str]]]:
    import numpy.dtypes
    multiarray = np._core.multiarray
    out: List[Union[type, Tuple[object, str]]] = [np.ndarray, np.dtype]
    for name in ('_reconstruct', 'scalar'):
        func = getattr(multiarray, name)
        # numpy 2 pickles name numpy._core, numpy 1 pickles numpy.core
        out += [(func, f'numpy._core.multiarray.{name}'),
                (func, f'numpy.core.multiarray.{name}')]
    out += [
        cls for cls in vars(numpy.dtypes).values()
        if isinstance(cls, type) and issubclass(cls, np.dtype)
    ]
    return out


def checkpoint_safe_globals() -> List[Union[type, Tuple[object, str]]]:
    """The globals :func:`safe_torch_load` allows (see the module doc)."""
    from mmengine.logging import HistoryBuffer
    return [
        HistoryBuffer,
        argparse.Namespace,
        (_history_buffer_statistic, 'builtins.getattr'),
    ] + _numpy_globals()


def _describe(f) -> str:
    return f if isinstance(f, str) else getattr(f, 'name', repr(f))


def _unsafe_globals(f) -> List[str]:
    try:
        if not isinstance(f, str):
            f.seek(0)
        allowed = set()
        for g in checkpoint_safe_globals():
            if isinstance(g, tuple):
                allowed.add(g[1])
            else:
                allowed.add(f'{g.__module__}.{g.__qualname__}')
        found = torch.serialization.get_unsafe_globals_in_checkpoint(f)
        return [g for g in found if g not in allowed]
    except Exception:  # not a zip checkpoint: the error message suffices
        return []
    finally:
        if not isinstance(f, str):
            f.seek(0)


#: What the weights-only unpickler says when a file asks for code.
_UNSAFE_REASON = re.compile(r'(?i)global|reduce|build|allow|new object')


def _weights_only_reason(message: str) -> str:
    lines = [line.strip() for line in message.splitlines()]
    for i, line in enumerate(lines):
        if 'WeightsUnpickler error' in line:
            tail = line.split('WeightsUnpickler error', 1)[1].strip(' :')
            rest = [x for x in lines[i + 1:] if x]
            return tail or (rest[0] if rest else line)
    return lines[-1] if lines else message


# ---------------------------------------------------------------------------
# TorchScript archives, read without running them
# ---------------------------------------------------------------------------
#: Storage classes of TorchScript archives and the dtypes they hold.
_ARCHIVE_STORAGE_DTYPES = {
    'FloatStorage': torch.float32,
    'DoubleStorage': torch.float64,
    'HalfStorage': torch.float16,
    'BFloat16Storage': torch.bfloat16,
    'LongStorage': torch.int64,
    'IntStorage': torch.int32,
    'ShortStorage': torch.int16,
    'CharStorage': torch.int8,
    'ByteStorage': torch.uint8,
    'BoolStorage': torch.bool,
}


def _identity(value, *args):
    return value


#: Pure helpers TorchScript pickles call for typed containers: they return
#: their first argument unchanged.
_ARCHIVE_CONTAINER_HELPERS = ('restore_type_tag', 'build_intlist',
                              'build_doublelist', 'build_boollist',
                              'build_tensorlist')


class _ArchiveStorage:
    """Stands for a storage class of the archive (its dtype only)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = _ARCHIVE_STORAGE_DTYPES[name]


class _ArchiveObject:
    """A TorchScript object of an archive: its class name and its pickled
    state, with none of the archive's code run."""
    qualname = ''
    state = None  # set by BUILD; NEWOBJ does not call __init__


def _rebuild_archive_tensor(storage, storage_offset, size, stride, *unused):
    """``torch._utils._rebuild_tensor_v2`` on a flat tensor from the
    archive (``as_strided`` checks the bounds)."""
    if not (isinstance(storage, torch.Tensor)
            and isinstance(storage_offset, int) and isinstance(size, tuple)
            and isinstance(stride, tuple)):
        raise pickle.UnpicklingError('malformed tensor record')
    return storage.as_strided(size, stride, storage_offset)


class _DisallowedGlobal(pickle.UnpicklingError):
    """A TorchScript archive's pickle names a global outside the
    allow-list."""


class _ArchiveUnpickler(pickle._Unpickler):
    """Reads an archive's ``data.pkl`` allowing only tensors, ordered dicts,
    the container helpers and ``__torch__`` objects (recorded, never
    constructed or run); ``BUILD`` only sets an :class:`_ArchiveObject`'s
    state."""

    def __init__(self, file, read_storage) -> None:
        super().__init__(file)
        self._read_storage = read_storage
        self._classes: Dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == 'torch._utils' and name == '_rebuild_tensor_v2':
            return _rebuild_archive_tensor
        if module == 'collections' and name == 'OrderedDict':
            return OrderedDict
        if module == 'torch' and name in _ARCHIVE_STORAGE_DTYPES:
            return _ArchiveStorage(name)
        if module == 'torch.jit._pickle' and name in (
                _ARCHIVE_CONTAINER_HELPERS):
            return _identity
        if module == '__torch__' or module.startswith('__torch__.'):
            qualname = f'{module}.{name}'
            if qualname not in self._classes:
                self._classes[qualname] = type(name, (_ArchiveObject, ),
                                               dict(qualname=qualname))
            return self._classes[qualname]
        raise _DisallowedGlobal(f'{module}.{name}')

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5
                and pid[0] == 'storage' and isinstance(pid[1], _ArchiveStorage)
                and isinstance(pid[2], str)):
            raise pickle.UnpicklingError(f'unsupported record {pid!r}')
        return self._read_storage(pid[2], pid[1].dtype)

    def load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, _ArchiveObject):
            raise pickle.UnpicklingError(
                f'BUILD of a {type(inst).__name__} is not allowed')
        inst.state = state

    dispatch = dict(pickle._Unpickler.dispatch)
    dispatch[pickle.BUILD[0]] = load_build


def is_torchscript_archive(f) -> bool:
    """Whether ``f`` is a TorchScript archive (``torch.jit.save``; OpenAI's
    CLIP ``.pt`` files): a zip file with a ``constants.pkl`` record, which
    ``torch.save`` files never have.

    Args:
        f (str | file-like): Path or seekable binary file (its position is
            kept).

    Returns:
        bool: True for a TorchScript archive.
    """
    position = None if isinstance(f, str) else f.tell()
    try:
        if not zipfile.is_zipfile(f):
            return False
        with zipfile.ZipFile(f) as zf:
            return any(n.endswith('/constants.pkl') for n in zf.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False
    finally:
        if position is not None:
            f.seek(position)


class _ArchiveCode:
    """The module classes' ``__parameters__`` + ``__buffers__`` names, read
    from an archive's code with :mod:`ast` (parsed, never run); one parse
    per code file."""

    def __init__(self, zf: zipfile.ZipFile, root: str) -> None:
        self._zf, self._root = zf, root
        self._trees: Dict[str, Optional[ast.Module]] = {}

    def _tree(self, module: str) -> Optional[ast.Module]:
        if module not in self._trees:
            record = f"{self._root}code/{module.replace('.', '/')}.py"
            try:
                self._trees[module] = ast.parse(
                    self._zf.read(record).decode('utf-8'))
            except (KeyError, SyntaxError, UnicodeDecodeError, ValueError,
                    RecursionError):
                self._trees[module] = None
        return self._trees[module]

    def declared(self, qualname: str) -> Optional[set]:
        """The state names of class ``qualname``, or None if the archive
        has no definition of it."""
        module, _, name = qualname.rpartition('.')
        tree = self._tree(module)
        for node in tree.body if tree is not None else ():
            if isinstance(node, ast.ClassDef) and node.name == name:
                names = set()
                for stmt in node.body:
                    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                            and isinstance(stmt.targets[0], ast.Name)
                            and stmt.targets[0].id
                            in ('__parameters__', '__buffers__')):
                        names.update(ast.literal_eval(stmt.value))
                return names
        return None


#: Deepest module nesting and most module objects read from an archive
#: (guards against cyclic or exponentially shared object graphs).
_MAX_ARCHIVE_DEPTH = 64
_MAX_ARCHIVE_MODULES = 100000


def read_torchscript_state_dict(
    f,
    source: Optional[str] = None,
    unsafe_hint: str = f"the '{UNSAFE_PREFIX}' prefix"
) -> 'OrderedDict[str, torch.Tensor]':
    """The state dict of a TorchScript archive, read without running it.

    ``torch.jit.load`` compiles the archive's code and runs its
    ``__setstate__`` methods while loading, and ``torch.load`` refuses
    archives under ``weights_only=True``; so does open_clip's
    ``load_state_dict``, and its ``load_openai_model`` uses
    ``torch.jit.load``. This reader unpickles the archive's ``data.pkl``
    with an allow-list (tensors, ordered dicts, TorchScript's container
    helpers; ``__torch__`` objects are only recorded) and takes the
    parameters and buffers each module class declares in the archive's
    code (``__parameters__`` / ``__buffers__``, parsed with :mod:`ast`), so
    the result equals ``torch.jit.load(f).state_dict()``.

    Args:
        f (str | file-like): The archive.
        source (str, optional): Name for messages. Defaults to the path.
        unsafe_hint (str): How the caller asks for ``torch.jit.load``
            instead, for the error message. Defaults to the ``unsafe://``
            prefix.

    Returns:
        OrderedDict[str, torch.Tensor]: Parameters and buffers on CPU.

    Raises:
        UnsafeCheckpointError: The pickle asks for another global.
        CorruptCheckpointError: The archive cannot be read as a module
            (missing records, an object with a custom ``__getstate__``,
            big-endian data).
    """
    name = source or _describe(f)
    try:
        with zipfile.ZipFile(f) as zf:
            names = zf.namelist()
            roots = [
                n[:-len('data.pkl')] for n in names
                if n.endswith('/data.pkl') and n.count('/') == 1
            ]
            if len(roots) != 1:
                raise CorruptCheckpointError(
                    f'cannot read TorchScript archive {name}: expected one '
                    f'<name>/data.pkl record, found {len(roots)}')
            root = roots[0]
            if (f'{root}byteorder' in names
                    and zf.read(f'{root}byteorder').decode().strip()
                    != sys.byteorder):
                raise CorruptCheckpointError(
                    f'TorchScript archive {name} stores its tensors in '
                    f'another byte order than this machine ({sys.byteorder})')
            storages: Dict[str, torch.Tensor] = {}

            def read_storage(key: str, dtype: torch.dtype) -> torch.Tensor:
                if key not in storages:
                    raw = bytearray(zf.read(f'{root}data/{key}'))
                    storages[key] = torch.frombuffer(
                        raw, dtype=dtype) if (raw) else torch.empty(
                            0, dtype=dtype)
                if storages[key].dtype != dtype:
                    raise pickle.UnpicklingError(
                        f'storage {key} is read as two dtypes')
                return storages[key]

            with zf.open(f'{root}data.pkl') as data:
                top = _ArchiveUnpickler(data, read_storage).load()
            if not isinstance(top, _ArchiveObject):
                raise CorruptCheckpointError(
                    f'TorchScript archive {name} does not hold a module '
                    f'(found {type(top).__name__})')
            code = _ArchiveCode(zf, root)
            out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
            stack, visited = [(top, '', 0)], 0
            while stack:
                obj, prefix, depth = stack.pop()
                visited += 1
                if (depth > _MAX_ARCHIVE_DEPTH
                        or visited > _MAX_ARCHIVE_MODULES):
                    raise CorruptCheckpointError(
                        f'cannot read TorchScript archive {name}: modules '
                        f'nested deeper than {_MAX_ARCHIVE_DEPTH} or more '
                        f'than {_MAX_ARCHIVE_MODULES}')
                if not isinstance(obj.state, dict):
                    raise CorruptCheckpointError(
                        f'cannot read TorchScript archive {name}: '
                        f'{obj.qualname} has a custom __getstate__ (its '
                        'state is not a dict of attributes)')
                declared = code.declared(obj.qualname)
                children = []
                for attr, value in obj.state.items():
                    if isinstance(value, _ArchiveObject):
                        children.append((value, f'{prefix}{attr}.', depth + 1))
                    elif isinstance(value,
                                    torch.Tensor) and (declared is None
                                                       or attr in declared):
                        out[prefix + attr] = value
                stack.extend(reversed(children))
            return out
    except _DisallowedGlobal as exc:
        raise UnsafeCheckpointError(
            f'refusing to read TorchScript archive {name}: it asks for '
            f'[{exc.args[0]!r}], which the safe reader (tensors and module '
            'attributes only) does not allow. If you trust the file, load it '
            f'with {unsafe_hint} (torch.jit.load, which runs its code).'
        ) from None
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, KeyError, OSError,
            EOFError, RuntimeError, TypeError, ValueError,
            AttributeError) as exc:
        raise CorruptCheckpointError(
            f'cannot read TorchScript archive {name}: '
            f'{type(exc).__name__}: {exc}') from exc


def safe_torch_load(f,
                    map_location='cpu',
                    *,
                    unsafe: bool = False,
                    unsafe_hint: str = f"the '{UNSAFE_PREFIX}' prefix"):
    """``torch.load`` that never runs code from the file (unless asked).

    TorchScript archives, which ``torch.load`` refuses under
    ``weights_only=True``, are read by :func:`read_torchscript_state_dict`.

    Args:
        f (str | file-like): Path or binary file object.
        map_location: Passed to ``torch.load``. Defaults to ``'cpu'``.
        unsafe (bool): Unpickle everything (``weights_only=False``); only
            for files from a source you trust, since unpickling runs any
            code the file contains. A warning says so. Defaults to False.
        unsafe_hint (str): How the caller asks for ``unsafe``, for the error
            message. Defaults to the ``unsafe://`` prefix.

    Returns:
        The unpickled object; for a TorchScript archive its state dict
        (:func:`read_torchscript_state_dict`, or ``torch.jit.load`` with
        ``unsafe``).

    Raises:
        FileNotFoundError: ``f`` is a path that does not exist.
        UnsafeCheckpointError: The file needs globals outside the
            allow-list; the message names them and ``unsafe_hint``.
        CorruptCheckpointError: The file cannot be read (truncated, not a
            checkpoint).
    """
    name = _describe(f)
    if isinstance(f, str):
        f = osp.expanduser(f)
        if not osp.isfile(f):
            raise FileNotFoundError(f'checkpoint file {f} does not exist')
    if is_torchscript_archive(f):
        if unsafe:
            print_log(
                f'loading TorchScript archive {name} with torch.jit.load: '
                'this runs code the archive contains; only do it for files '
                'from a source you trust',
                logger='current',
                level=30)
            state = torch.jit.load(f, map_location='cpu').state_dict()
        else:
            state = read_torchscript_state_dict(
                f, source=name, unsafe_hint=unsafe_hint)
        if map_location not in (None, 'cpu'):
            state = OrderedDict(
                (k, v.to(map_location)) for k, v in state.items())
        return state
    if unsafe:
        print_log(
            f'unpickling {name} with weights_only=False: this runs any code '
            'the file contains; only do it for files from a source you '
            'trust',
            logger='current',
            level=30)
        return torch.load(f, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _weights_only_reason(str(exc))
        unsafe_names = _unsafe_globals(f)
        if not unsafe_names and not _UNSAFE_REASON.search(reason):
            raise CorruptCheckpointError(
                f'cannot read checkpoint {name} (truncated or not a '
                f'checkpoint): {reason}') from exc
        what = f'it asks for {unsafe_names}' if unsafe_names else reason
        raise UnsafeCheckpointError(
            f'refusing to unpickle {name}: {what}, which the safe loader '
            '(torch.load weights_only=True with the MMEngine checkpoint types '
            'allowed) does not allow, because unpickling them can run '
            f'arbitrary code. If you trust the file, load it with '
            f'{unsafe_hint}.') from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise CorruptCheckpointError(
            f'cannot read checkpoint {name} (truncated or not a checkpoint): '
            f'{type(exc).__name__}: {exc}') from exc


def split_unsafe_prefix(filename: str) -> Tuple[str, bool]:
    """``('path', True)`` for ``'unsafe://path'``, else ``(filename,
    False)``."""
    if filename.startswith(UNSAFE_PREFIX):
        return filename[len(UNSAFE_PREFIX):], True
    return filename, False


# ---------------------------------------------------------------------------
# MMEngine CheckpointLoader schemes
# ---------------------------------------------------------------------------
def load_from_local(filename: str, map_location=None):
    """MMEngine's local scheme: :func:`safe_torch_load` (``unsafe://path``
    unpickles fully)."""
    path, unsafe = split_unsafe_prefix(filename)
    if path.startswith(('http://', 'https://')):
        return load_from_http(filename, map_location=map_location)
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} can not be found.')
    return safe_torch_load(path, map_location=map_location, unsafe=unsafe)


def load_from_http(filename: str,
                   map_location=None,
                   model_dir: Optional[str] = None,
                   progress: bool = False):
    """MMEngine's ``http(s)://`` scheme, which its ``open-mmlab://``,
    ``torchvision://`` and ``mmcls://`` loaders call too.

    MMEngine's version reads downloads with ``torch.hub``'s
    ``weights_only=False``. This one downloads the file once into the torch
    hub cache (``$TORCH_HOME/hub/checkpoints`` or ``model_dir``; rank 0
    first in distributed runs) and reads it with :func:`safe_torch_load`
    (``unsafe://https://...`` unpickles fully).
    """
    from urllib.parse import urlparse

    from mmengine.dist import get_dist_info
    url, unsafe = split_unsafe_prefix(filename)

    def fetch() -> str:
        folder = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
        os.makedirs(folder, exist_ok=True)
        cached = osp.join(folder, osp.basename(urlparse(url).path))
        if not osp.isfile(cached):
            torch.hub.download_url_to_file(url, cached, progress=progress)
        return cached

    rank, world_size = get_dist_info()
    if rank == 0:
        cached = fetch()
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            cached = fetch()
    return safe_torch_load(cached, map_location=map_location, unsafe=unsafe)


def register_checkpoint_loaders() -> None:
    """Make MMEngine's ``CheckpointLoader`` (``load_from``, resume,
    ``init_cfg``, ``load_checkpoint``) read files with
    :func:`safe_torch_load`.

    Registers :func:`load_from_local` for paths and ``unsafe://`` (explicit
    full unpickling) and :func:`load_from_http` for ``http(s)://``, and
    makes MMEngine's ``open-mmlab://`` / ``torchvision://`` / ``mmcls://``
    loaders (which call ``mmengine.runner.checkpoint.load_from_http``
    directly) use it. Also registers MMEngine's ``'local_atomic'`` file
    backend (:mod:`mmstop.utils.fileio`). Idempotent.
    """
    import mmengine.runner.checkpoint as mm_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader

    from . import fileio  # noqa: F401  (registers the 'local_atomic' backend)
    CheckpointLoader.register_scheme(
        prefixes=('', UNSAFE_PREFIX), loader=load_from_local, force=True)
    CheckpointLoader.register_scheme(
        prefixes=('http://', 'https://'), loader=load_from_http, force=True)
    mm_checkpoint.load_from_http = load_from_http


def read_checkpoint(filename: str, map_location='cpu'):
    """Read a checkpoint through MMEngine's ``CheckpointLoader`` (local
    paths, ``unsafe://``, URLs), i.e. with :func:`safe_torch_load` for
    files.

    Raises:
        FileNotFoundError: A local ``filename`` does not exist.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if not isinstance(filename, str):
        raise TypeError(f'checkpoint must be a path string, got '
                        f'{type(filename).__name__}')
    path, _ = split_unsafe_prefix(filename)
    if '://' not in path and not osp.isfile(osp.expanduser(path)):
        raise FileNotFoundError(f'checkpoint file not found: {filename!r}')
    return CheckpointLoader.load_checkpoint(
        filename, map_location=map_location)


# ---------------------------------------------------------------------------
# converters
# ---------------------------------------------------------------------------
UNSAFE_LOAD_HELP = (
    'unpickle SRC fully (torch.load weights_only=False) if the safe loader '
    'refuses it. This RUNS ANY CODE the file contains: only for files from '
    'a source you trust')


def read_converter_source(src: str, unsafe_load: bool = False):
    """Read a converter's input with :func:`safe_torch_load` (error hints
    name ``--unsafe-load``)."""
    return safe_torch_load(
        src, unsafe=unsafe_load, unsafe_hint='--unsafe-load')


def write_converted_checkpoint(state: Dict[str, torch.Tensor], src: str,
                               dst: str, converter: str) -> None:
    """Write ``{'state_dict': state, 'meta': ...}`` to ``dst`` atomically.

    Raises:
        CheckpointError: ``state`` is empty (nothing was recognised).
    """
    from .fileio import atomic_torch_save
    if not state:
        raise CheckpointError(
            f'{src}: no recognisable parameter, nothing written to {dst}')
    atomic_torch_save(
        dict(
            state_dict=state,
            meta=dict(converted_from=osp.abspath(src), converter=converter)),
        dst)


# ---------------------------------------------------------------------------
# strict loading
# ---------------------------------------------------------------------------
def _compile(patterns: Iterable[str]) -> List[re.Pattern]:
    if isinstance(patterns, str):
        patterns = [patterns]
    out = []
    for p in patterns or ():
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise ValueError(f'allow_mismatch pattern {p!r} is not a '
                             f'regular expression: {exc}') from None
    return out


def _own_tensors(module: nn.Module):
    for name, param in module._parameters.items():
        if param is not None:
            yield name, param
    for name, buf in module._buffers.items():
        if buf is not None and name not in module._non_persistent_buffers_set:
            yield name, buf


def mismatch_error(title: str,
                   missing: Sequence[str] = (),
                   unexpected: Sequence[str] = (),
                   mis_shaped: Sequence[Tuple[str, object, object]] = (),
                   other: Sequence[str] = (),
                   hint: str = 'allow_mismatch') -> CheckpointMismatchError:
    """The error of a strict load, listing every key that differs.

    Args:
        title (str): First line (what was loaded into what).
        missing (Sequence[str]): Keys of the model not in the checkpoint.
            Defaults to ().
        unexpected (Sequence[str]): Keys of the checkpoint not in the model.
            Defaults to ().
        mis_shaped (Sequence[tuple]): ``(key, checkpoint shape, model
            shape)``. Defaults to ().
        other (Sequence[str]): Further problems, one line each. Defaults to
            ().
        hint (str): The option that lists the keys allowed to differ.
            Defaults to ``'allow_mismatch'``.

    Returns:
        CheckpointMismatchError: The error to raise.
    """
    lines = [title]
    if missing:
        lines.append(f'  {len(missing)} missing key(s) (in the model, not in '
                     f'the checkpoint): {", ".join(missing)}')
    if unexpected:
        lines.append(f'  {len(unexpected)} unexpected key(s) (in the '
                     f'checkpoint, not in the model): {", ".join(unexpected)}')
    if mis_shaped:
        lines.append(f'  {len(mis_shaped)} mis-shaped key(s): ' +
                     '; '.join(f'{k}: checkpoint {c}, model {m}'
                               for k, c, m in mis_shaped))
    lines += [f'  {e}' for e in other]
    lines.append(
        'Loading stops here instead of leaving these tensors at their '
        'initial values: fix the config or the checkpoint, or list the '
        f'keys you expect to differ in {hint} (regular '
        r"expressions, e.g. [r'cls_head\.'] for a new classification "
        'head).')
    return CheckpointMismatchError('\n'.join(lines))


def load_state_dict_checked(module: nn.Module,
                            state_dict: Dict[str, torch.Tensor],
                            allow_mismatch: Sequence[str] = (),
                            source: str = 'checkpoint',
                            hint: str = 'allow_mismatch',
                            logger='current') -> Dict[str, list]:
    """Load ``state_dict`` into ``module``; fail on any mismatch.

    Works like MMEngine's ``load_state_dict`` (module-wise
    ``_load_from_state_dict``, so state-dict pre-hooks such as VideoMamba's
    position-embedding interpolation and 2-D -> 3-D inflation run and log
    their adaptations), but collects the keys that do not match: missing
    from ``state_dict``, unexpected in it, and tensors whose shape differs
    from the model's. A key matching one of ``allow_mismatch`` (regular
    expressions, ``re.match`` at the start of the key) is tolerated: it is
    logged as a warning and the model keeps its current value (a new
    classification head, for example). Any other mismatch raises, after the
    matching tensors were copied.

    Args:
        module (nn.Module): The model (a wrapper's ``.module`` is used).
        state_dict (dict): Name -> tensor.
        allow_mismatch (Sequence[str]): Key patterns whose mismatch is
            allowed. Defaults to ().
        source (str): What is loaded, for messages (e.g. the file).
            Defaults to ``'checkpoint'``.
        hint (str): The option that holds the patterns, for the error
            message. Defaults to ``'allow_mismatch'``.
        logger: ``print_log`` logger. Defaults to ``'current'``.

    Returns:
        dict: ``missing``, ``unexpected`` and ``mismatched`` (``(key,
        checkpoint shape, model shape)``) keys that were allowed.

    Raises:
        CheckpointMismatchError: Mismatches outside ``allow_mismatch``; the
            message lists every such key.
    """
    from mmengine.model import is_model_wrapper
    if is_model_wrapper(module):
        module = module.module
    patterns = _compile(allow_mismatch)
    metadata = getattr(state_dict, '_metadata', None)
    state_dict = OrderedDict(state_dict)
    if metadata is not None:
        state_dict._metadata = metadata
    missing: List[str] = []
    unexpected: List[str] = []
    errors: List[str] = []
    mismatched: List[Tuple[str, tuple, tuple]] = []

    def load(mod: nn.Module, local: dict, prefix: str = '') -> None:
        meta = {} if metadata is None else metadata.get(prefix[:-1], {})
        mod_errors: List[str] = []
        mod._load_from_state_dict(local, prefix, meta, True, missing,
                                  unexpected, mod_errors)
        # torch copies nothing for a shape mismatch and reports it as a
        # message; record it as a key (pre-hooks may have adapted `local`)
        for name, tensor in _own_tensors(mod):
            key = prefix + name
            value = local.get(key)
            if (isinstance(value, torch.Tensor)
                    and tuple(value.shape) != tuple(tensor.shape)):
                mismatched.append(
                    (key, tuple(value.shape), tuple(tensor.shape)))
                mod_errors = [
                    m for m in mod_errors
                    if not m.startswith(f'size mismatch for {key}:')
                ]
        errors.extend(mod_errors)
        for name, child in mod._modules.items():
            if child is not None:
                child_prefix = prefix + name + '.'
                load(child, {
                    k: v
                    for k, v in local.items() if k.startswith(child_prefix)
                }, child_prefix)

    load(module, state_dict)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]

    def allowed(key: str) -> bool:
        return any(p.match(key) for p in patterns)

    bad_missing = [k for k in missing if not allowed(k)]
    bad_unexpected = [k for k in unexpected if not allowed(k)]
    bad_shape = [m for m in mismatched if not allowed(m[0])]
    if bad_missing or bad_unexpected or bad_shape or errors:
        raise mismatch_error(
            f'{source} does not match {type(module).__name__}:', bad_missing,
            bad_unexpected, bad_shape, errors, hint)
    result = dict(
        missing=missing,
        unexpected=unexpected,
        mismatched=[m for m in mismatched])
    if missing or unexpected or mismatched:
        print_log(
            f'{source}: allowed by {hint} and not loaded (the model keeps its '
            f'values): missing {missing}, unexpected {unexpected}, '
            f'mis-shaped {[m[0] for m in mismatched]}',
            logger=logger,
            level=30)
    return result


#: Entries that wrap a state dict in published checkpoints: MMEngine and
#: official STOP (``state_dict``), DeiT-style / official VideoMamba and SSP
#: (``model``), DeepSpeed (``module``).
STATE_DICT_WRAPPERS = ('state_dict', 'model', 'module')


def unwrap_state_dict(checkpoint,
                      source: str = 'checkpoint',
                      wrappers: Sequence[str] = STATE_DICT_WRAPPERS,
                      prefixes: Sequence[str] = ('module.', ),
                      tensors_only: bool = False) -> 'OrderedDict':
    """The state dict inside a checkpoint, with wrapper prefixes removed.

    The one place mmstop takes a state dict out of a file's contents.
    While the current dict has an entry named in ``wrappers`` whose value
    is a dict, that value is taken (the first such name in ``wrappers``
    order; a bare state dict has none). Then each key loses every prefix
    of ``prefixes`` it starts with, in order (``module.`` of DDP /
    DeepSpeed; ``('module.', 'clip.')`` turns ``module.clip.x`` into
    ``x``).

    Args:
        checkpoint: What the file holds.
        source (str): The file, for messages. Defaults to ``'checkpoint'``.
        wrappers (Sequence[str]): Wrapper entries, in order of preference.
            Defaults to :data:`STATE_DICT_WRAPPERS`.
        prefixes (Sequence[str]): Key prefixes to remove. Defaults to
            ``('module.', )``.
        tensors_only (bool): Raise if a value is not a tensor (a wrapper
            that was not recognised). Defaults to False.

    Returns:
        OrderedDict: The state dict.

    Raises:
        CheckpointError: ``checkpoint`` is not a dict, or (with
            ``tensors_only``) holds non-tensor values; the message names
            ``source``.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f'{source} holds a {type(checkpoint).__name__}, not a state dict '
            f'or a checkpoint dict with one of {tuple(wrappers)}')
    state, seen = checkpoint, {id(checkpoint)}
    while True:
        inner = next(
            (state[w] for w in wrappers if isinstance(state.get(w), dict)),
            None)
        if inner is None or id(inner) in seen:
            break
        state = inner
        seen.add(id(state))
    out = OrderedDict()
    for key, value in state.items():
        for prefix in prefixes:
            if isinstance(key, str) and key.startswith(prefix):
                key = key[len(prefix):]
        out[key] = value
    if tensors_only:
        bad = [k for k, v in out.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(
                f'{source}: not a state dict, the values of {bad[:5]} are '
                f'not tensors (known wrappers: {tuple(wrappers)})')
    return out


def extract_state_dict(
    checkpoint,
    source: str = 'checkpoint',
    prefix: Optional[str] = None,
    revise_keys: Sequence[Tuple[str, str]] = ((r'^module\.', ''), )
) -> 'OrderedDict':
    """The state dict of an MMEngine-style checkpoint (``state_dict``
    entry, or the dict itself), optionally restricted to ``prefix`` (as
    MMEngine's ``Pretrained`` init does) and with ``revise_keys`` applied.

    Raises:
        CheckpointError: No state dict, or nothing under ``prefix``.
    """
    if isinstance(checkpoint, dict) and not isinstance(
            checkpoint.get('state_dict', {}), dict):
        raise CheckpointError(f'{source}: state_dict is a '
                              f'{type(checkpoint["state_dict"]).__name__}, '
                              'not a dict')
    state = unwrap_state_dict(
        checkpoint, source, wrappers=('state_dict', ), prefixes=())
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state = {
            k[len(prefix):]: v
            for k, v in state.items() if k.startswith(prefix)
        }
        if not state:
            raise CheckpointError(f'{source} has no key under {prefix!r}')
    out = OrderedDict()
    for key, value in state.items():
        for pattern, repl in revise_keys:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def load_checkpoint_checked(module: nn.Module,
                            filename: str,
                            allow_mismatch: Sequence[str] = (),
                            prefix: Optional[str] = None,
                            hint: str = 'allow_mismatch',
                            logger='current') -> dict:
    """Read ``filename`` safely (:func:`read_checkpoint`) and load its state
    dict with :func:`load_state_dict_checked`.

    Args:
        module (nn.Module): Target model.
        filename (str): Checkpoint path, ``unsafe://path`` or URL.
        allow_mismatch (Sequence[str]): Tolerated key patterns.
            Defaults to ().
        prefix (str, optional): Only load the keys under this prefix (with
            the prefix removed), like MMEngine's ``Pretrained`` init.
            Defaults to None.
        hint (str): The option holding the patterns, for error messages.
            Defaults to ``'allow_mismatch'``.
        logger: ``print_log`` logger. Defaults to ``'current'``.

    Returns:
        dict: The checkpoint as read.
    """
    checkpoint = read_checkpoint(filename)
    state = extract_state_dict(checkpoint, source=filename, prefix=prefix)
    load_state_dict_checked(
        module,
        state,
        allow_mismatch,
        source=f'checkpoint {filename}',
        hint=hint,
        logger=logger)
    return checkpoint


def split_pretrained_init_cfg(init_cfg) -> Tuple[Optional[dict], list]:
    """``(the init_cfg entry of type 'Pretrained' or None, the other
    entries)``, for modules that load their ``Pretrained`` init strictly
    themselves and leave the rest to MMEngine."""
    cfgs = [init_cfg] if isinstance(init_cfg, dict) else list(init_cfg or [])
    pretrained = [c for c in cfgs if c.get('type') == 'Pretrained']
    others = [c for c in cfgs if c.get('type') != 'Pretrained']
    return (pretrained[0] if pretrained else None), others


# ---------------------------------------------------------------------------
# resume
# ---------------------------------------------------------------------------
_STEP_FILE = re.compile(r'^(epoch|iter)_(\d+)\.pth$')


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` is not an intact ``torch.save`` file, or None.

    Checks the zip structure (a truncated file has no central directory)
    and the CRC of every member, without unpickling anything.
    """
    if not osp.isfile(path):
        return 'no such file'
    if osp.getsize(path) == 0:
        return 'empty file'
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if not any(n.endswith('data.pkl') for n in names):
                return 'no data.pkl: not a torch.save checkpoint'
            bad = zf.testzip()
            if bad is not None:
                return f'member {bad} fails its CRC check'
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        return f'{type(exc).__name__}: {exc}'
    return None


def find_resumable_checkpoint(work_dir: str,
                              logger='current') -> Optional[str]:
    """The newest intact checkpoint of ``work_dir`` for ``--resume``.

    Candidates: the file named by ``work_dir/last_checkpoint`` (MMEngine's
    record of the latest save), then every ``epoch_<n>.pth`` /
    ``iter_<n>.pth`` of its folder and of ``work_dir``, newest step first.
    A candidate that fails :func:`checkpoint_problem` is skipped with a
    warning naming it and the reason.

    Args:
        work_dir (str): The run's work directory.
        logger: ``print_log`` logger. Defaults to ``'current'``.

    Returns:
        str | None: The checkpoint to resume from, or None if there is no
        intact one.
    """
    candidates: List[str] = []
    folders = [work_dir]
    record = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(record):
        with open(record) as f:
            last = f.read().strip()
        if last:
            candidates.append(last)
            if osp.dirname(last) and osp.dirname(last) not in folders:
                folders.insert(0, osp.dirname(last))
    steps = []
    for folder in folders:
        if not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            m = _STEP_FILE.match(name)
            if m:
                steps.append((int(m.group(2)), osp.join(folder, name)))
    candidates += [p for _, p in sorted(steps, reverse=True)]
    seen = set()
    for path in candidates:
        real = osp.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        print_log(
            f'resume: skipping checkpoint {path}: {problem}',
            logger=logger,
            level=30)
    return None
