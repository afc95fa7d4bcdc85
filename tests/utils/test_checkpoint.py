# Copyright (c) mmstop contributors. All rights reserved.
"""mmstop.utils.checkpoint: the safe loader on every loading path, strict
state-dict loading, resume discovery."""
import argparse
import fractions
import os.path as osp
import runpy
from typing import Tuple

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT
from mmengine.logging import HistoryBuffer, MessageHub
from mmengine.registry import init_default_scope
from torch import nn

from mmstop.utils.checkpoint import (CheckpointMismatchError,
                                     CorruptCheckpointError,
                                     UnsafeCheckpointError, checkpoint_problem,
                                     find_resumable_checkpoint,
                                     load_state_dict_checked, safe_torch_load)


class Payload:
    """Unpickling this creates the marker file (code execution)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture
def malicious(tmp_path):
    """A torch.save file whose unpickling would create ``marker``; the
    tensors around it look like a state dict / features file."""
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'malicious.pth'
    state = {'weight': torch.zeros(2), 'evil': Payload(marker)}
    torch.save(
        dict(
            state_dict=state,
            model=state,
            format='x',
            video_features=torch.zeros(1, 2)), path)
    assert not marker.exists()
    return str(path), marker


def _converter(name):
    path = osp.join(REPO_ROOT, 'tools', 'model_converters', name)
    return runpy.run_path(path, run_name='not_main')['main']


def _load_from(path, load_tool):  # load_from / --resume / tools/test.py CKPT
    from mmengine.runner.checkpoint import _load_checkpoint
    _load_checkpoint(path, map_location='cpu')


def _mmengine_load_checkpoint(path, load_tool):  # MMEngine Pretrained init
    from mmengine.runner import load_checkpoint
    load_checkpoint(nn.Linear(2, 2), path, map_location='cpu')


def _videomamba_pretrained(path, load_tool):
    from mmstop.models.backbones import VideoMamba
    VideoMamba(
        arch=dict(embed_dims=16, depth=1),
        img_size=16,
        patch_size=8,
        num_frames=2,
        pretrained=path).init_weights()


def _clip_pretrained(path, load_tool):
    from mmstop.models.clip import read_clip_checkpoint
    read_clip_checkpoint(path)


def _stop_converter(path, load_tool):
    _converter('stop_official_to_mmstop.py')([path, path + '.out'])


def _ssp_converter(path, load_tool):
    _converter('ssp_official_to_mmstop.py')([path, path + '.out'])


def _retrieval_features(path, load_tool):
    tool = load_tool('tools/retrieval_demo.py')
    try:
        tool.load_features(path)
    except tool.DemoError as exc:  # printed as 'error: ...' by main()
        raise SystemExit(str(exc))


def _retrieval_checkpoint(path, load_tool):
    tool = load_tool('tools/retrieval_demo.py')
    cfg = tool.load_config(
        osp.join(REPO_ROOT, 'configs', 'stop_clip_retrieval_demo.py'))
    try:
        tool.build_model(cfg, path, 'cpu')
    except tool.DemoError as exc:
        raise SystemExit(str(exc))


def _safe_torch_load(path, load_tool):
    safe_torch_load(path)


@pytest.mark.parametrize(
    'load', [
        _safe_torch_load, _load_from, _mmengine_load_checkpoint,
        _videomamba_pretrained, _clip_pretrained, _stop_converter,
        _ssp_converter, _retrieval_features, _retrieval_checkpoint
    ],
    ids=lambda f: f.__name__.strip('_'))
def test_malicious_pickle_never_runs(malicious, load, load_tool):
    path, marker = malicious
    init_default_scope('mmaction')
    with pytest.raises((UnsafeCheckpointError, SystemExit)) as err:
        load(path, load_tool)
    assert not marker.exists(), 'the pickled code ran'
    assert 'malicious.pth' in str(err.value)
    assert 'builtins.open' in str(err.value) or 'io.open' in str(
        err.value), str(err.value)


def test_mmengine_checkpoint_types_load_but_not_getattr(tmp_path):
    hub = MessageHub('hub')
    hub.update_scalar('train/loss', 1.5)
    hub.update_info('eta', np.float64(3.0))
    ckpt = dict(
        message_hub=hub.state_dict(),
        meta=dict(
            seed=0,
            arr=np.arange(3),
            dt=np.dtype('f4'),
            args=argparse.Namespace(lr=0.1)),
        state_dict={'w': torch.ones(2)})
    path = tmp_path / 'mmengine.pth'
    torch.save(ckpt, path)
    # HistoryBuffer.__getstate__ pickles its statistics methods through
    # builtins.getattr: the file really asks for it
    assert 'builtins.getattr' in (
        torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    out = safe_torch_load(str(path))
    buffer = out['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.mean() == 1.5
    assert out['message_hub']['runtime_info']['eta'] == 3.0
    assert out['meta']['args'].lr == 0.1
    np.testing.assert_array_equal(out['meta']['arr'], np.arange(3))

    # ... but getattr is only a lookup of HistoryBuffer statistics
    class Sneaky:

        def __reduce__(self):
            return (getattr, (HistoryBuffer, 'update'))

    torch.save({'x': Sneaky()}, path)
    with pytest.raises(UnsafeCheckpointError, match='mmengine.pth'):
        safe_torch_load(str(path))
    # other classes are refused, full unpickling on request loads them
    torch.save({'c': fractions.Fraction(1, 3)}, path)
    with pytest.raises(
            UnsafeCheckpointError, match="fractions.Fraction.*unsafe://"):
        safe_torch_load(str(path))
    assert safe_torch_load(
        str(path), unsafe=True)['c'] == fractions.Fraction(1, 3)


def test_corrupt_files_are_named(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'w': torch.zeros(1000)}, good)
    data = good.read_bytes()
    for name, content in (('empty.pth', b''), ('trunc.pth', data[:300]),
                          ('text.pth', b'not a checkpoint at all')):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(CorruptCheckpointError, match=name):
            safe_torch_load(str(path))
        assert checkpoint_problem(str(path)) is not None
    assert checkpoint_problem(str(good)) is None


class Net(nn.Module):

    def __init__(self, classes=3):
        super().__init__()
        self.backbone = nn.Linear(4, 5)
        self.head = nn.Linear(5, classes)


def test_checked_load_names_every_bad_key():
    state = Net(classes=7).state_dict()
    state['extra.weight'] = torch.zeros(1)
    del state['backbone.bias']
    model = Net()
    with pytest.raises(CheckpointMismatchError) as err:
        load_state_dict_checked(model, state, source='ckpt.pth')
    msg = str(err.value)
    assert 'ckpt.pth' in msg
    assert 'missing key(s) (in the model, not in the checkpoint): ' \
           'backbone.bias' in msg
    assert 'unexpected key(s) (in the checkpoint, not in the model): ' \
           'extra.weight' in msg
    assert 'head.weight: checkpoint (7, 5), model (3, 5)' in msg
    assert 'head.bias: checkpoint (7,), model (3,)' in msg


def test_checked_load_allows_listed_keys():
    source = Net(classes=7)
    state = source.state_dict()
    model = Net()
    head = model.head.weight.clone()
    result = load_state_dict_checked(model, state, allow_mismatch=[r'head\.'])
    assert [m[0] for m in result['mismatched']] == ['head.weight', 'head.bias']
    assert torch.equal(model.head.weight, head)  # kept its init
    assert torch.equal(model.backbone.weight, source.backbone.weight)


def test_resume_skips_truncated_latest(tmp_path, monkeypatch):
    work = tmp_path / 'work'
    work.mkdir()
    for step in (1, 2, 3):
        torch.save({
            'step': step,
            'w': torch.zeros(100)
        }, work / f'epoch_{step}.pth')
    latest = work / 'epoch_3.pth'
    latest.write_bytes(latest.read_bytes()[:200])  # killed mid-write
    (work / 'last_checkpoint').write_text(str(latest))
    logs = []
    monkeypatch.setattr('mmstop.utils.checkpoint.print_log',
                        lambda msg, **kwargs: logs.append(msg))
    found = find_resumable_checkpoint(str(work))
    assert found == str(work / 'epoch_2.pth')
    assert any('epoch_3.pth' in m and 'skipping' in m for m in logs), logs


def test_malicious_pickle_over_http_never_runs(malicious, tmp_path,
                                               monkeypatch):
    """load_from='http://...' (also behind open-mmlab:// / torchvision://)."""
    import functools
    import http.server
    import threading

    from mmengine.runner.checkpoint import _load_checkpoint
    path, marker = malicious
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=osp.dirname(path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f'http://127.0.0.1:{server.server_port}/malicious.pth'
        with pytest.raises(
                UnsafeCheckpointError, match=r'malicious\.pth.*open'):
            _load_checkpoint(url, map_location='cpu')
        # open-mmlab:// and torchvision:// reach MMEngine's http loader
        # through its module global, which is the safe one too
        from mmengine.runner import checkpoint as mm_checkpoint
        with pytest.raises(UnsafeCheckpointError):
            mm_checkpoint.load_from_http(url)
    finally:
        server.shutdown()
        server.server_close()
    assert not marker.exists(), 'the pickled code ran'


# ---------------------------------------------------------------------------
# TorchScript archives: read without running them
# ---------------------------------------------------------------------------
class ScriptedSetstate(nn.Module):
    """Its archive runs ``__setstate__`` (archive code) in torch.jit.load."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(2))

    def forward(self, x):
        return x + self.weight

    @torch.jit.export
    def __getstate__(self) -> Tuple[torch.Tensor, bool]:
        return (self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[torch.Tensor, bool]) -> None:
        print('ARCHIVE CODE RAN')
        self.training = state[1]


class Traced(nn.Module):

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
        self.register_buffer('mask', torch.tril(torch.ones(4, 4)))
        self.scale = nn.Parameter(torch.tensor(2.5, dtype=torch.float64))
        self.plain = torch.arange(4.)  # a tensor attribute, not state

    def forward(self, x):
        return self.block(x) @ self.mask * self.scale.float() + self.plain


@pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning')
@pytest.mark.filterwarnings('ignore:`torch.jit.*` is deprecated:FutureWarning')
def test_torchscript_archive_reads_like_jit_load(tmp_path):
    """The safe reader gives exactly ``torch.jit.load(f).state_dict()``:
    declared parameters and buffers (fp16 and fp64 too), not other tensor
    attributes."""
    from mmstop.utils.checkpoint import (is_torchscript_archive,
                                         read_torchscript_state_dict)
    path = tmp_path / 'traced.pt'
    torch.jit.save(torch.jit.trace(Traced(), torch.ones(2, 3)), str(path))
    ref = torch.jit.load(str(path)).state_dict()
    assert is_torchscript_archive(str(path))
    for state in (read_torchscript_state_dict(str(path)),
                  safe_torch_load(str(path))):
        assert list(state) == list(ref)
        assert 'plain' not in state and 'mask' in state
        for key, value in ref.items():
            assert state[key].dtype == value.dtype, key
            assert torch.equal(state[key], value), key
    half = tmp_path / 'half.pt'
    traced = torch.jit.trace(Traced(), torch.ones(2, 3))
    torch.jit.save(traced.half(), str(half))
    state = safe_torch_load(str(half))
    assert state['block.0.weight'].dtype == torch.float16
    ref = torch.jit.load(str(half)).state_dict()
    assert torch.equal(state['block.0.weight'], ref['block.0.weight'])


@pytest.mark.filterwarnings('ignore:`torch.jit.*` is deprecated:FutureWarning')
def test_torchscript_archive_code_never_runs(tmp_path, capfd):
    """torch.jit.load runs an archive's ``__setstate__``; the CLIP reader
    (and every safe_torch_load) must not."""
    from mmstop.models.clip import read_clip_checkpoint
    path = tmp_path / 'setstate.pt'
    torch.jit.save(torch.jit.script(ScriptedSetstate()), str(path))
    for read in (read_clip_checkpoint, safe_torch_load):
        with pytest.raises((CorruptCheckpointError, ValueError),
                           match=r'setstate\.pt.*custom __getstate__'):
            read(str(path))
    assert 'ARCHIVE CODE RAN' not in capfd.readouterr().out


def test_torchscript_archive_with_foreign_global_refused(tmp_path):
    """A pickle global in an archive is refused by name, never called."""
    import pickle
    import zipfile
    marker = tmp_path / 'PWNED'
    path = tmp_path / 'archive.pt'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('archive/data.pkl',
                    pickle.dumps({'w': Payload(marker)}, protocol=2))
        zf.writestr('archive/constants.pkl', pickle.dumps((), protocol=2))
        zf.writestr('archive/version', '3\n')
    with pytest.raises(
            UnsafeCheckpointError,
            match=r"archive\.pt.*'(builtins|io)\.open'"):
        safe_torch_load(str(path))
    assert not marker.exists(), 'the pickled code ran'


@pytest.mark.parametrize(
    'data',
    [
        b'\x80\x02c__torch__\nM\n)\x81.',  # a module object never BUILT
        b'\x80\x02ccollections\nOrderedDict\n)R}b.',  # BUILD of a dict
        b'\x80\x02K\x01.',  # not a module
        b'\x80\x02c__torch__\nM\n)\x81}X\x01\x00\x00\x00w(X\x07\x00\x00\x00'
        b'storageq\x00tQsb.',  # a malformed storage record
        b'\x80\x02c__torch__\nM',  # truncated
    ])
def test_torchscript_archive_malformed_pickles(tmp_path, data):
    """Malformed archives are CorruptCheckpointError naming the file."""
    import zipfile
    path = tmp_path / 'bad_archive.pt'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('bad/data.pkl', data)
        zf.writestr('bad/constants.pkl', b'\x80\x02).')
    with pytest.raises(CorruptCheckpointError, match='bad_archive.pt'):
        safe_torch_load(str(path))


@pytest.mark.parametrize('graph', ['cycle', 'shared'])
def test_torchscript_archive_object_graphs_end(tmp_path, monkeypatch, graph):
    """A module that contains itself, or 40 levels of modules each holding
    the next one twice (2**40 paths), is refused instead of hanging."""
    import pickle
    import sys
    import types
    import zipfile
    fake = types.ModuleType('__torch__')
    monkeypatch.setitem(sys.modules, '__torch__', fake)

    class M:

        def __init__(self):
            self.training = False

    M.__module__, M.__qualname__ = '__torch__', 'M'
    fake.M = M
    top = M()
    if graph == 'cycle':
        top.child = top
    else:
        node = top
        for _ in range(40):
            node.left = node.right = M()
            node = node.left
    path = tmp_path / 'graph.pt'
    with zipfile.ZipFile(path, 'w') as zf:
        zf.writestr('g/data.pkl', pickle.dumps(top, protocol=2))
        zf.writestr('g/constants.pkl', pickle.dumps((), protocol=2))
    with pytest.raises(CorruptCheckpointError, match='graph.pt.*nested'):
        safe_torch_load(str(path))


@pytest.mark.parametrize('wrapped, kwargs, expected', [
    ({
        'w': 1
    }, {}, {
        'w': 1
    }),
    ({
        'state_dict': {
            'module.w': 1
        },
        'meta': {}
    }, {}, {
        'w': 1
    }),
    ({
        'model': {
            'w': 1
        },
        'epoch': 3
    }, {}, {
        'w': 1
    }),
    ({
        'module': {
            'w': 1
        }
    }, {}, {
        'w': 1
    }),
    ({
        'state_dict': {
            'model': {
                'w': 1
            }
        }
    }, {}, {
        'w': 1
    }),
    ({
        'model': {
            'a': 1
        },
        'state_dict': {
            'b': 2
        }
    }, {}, {
        'b': 2
    }),
    ({
        'model': {
            'a': 1
        },
        'state_dict': {
            'b': 2
        }
    }, dict(wrappers=('model', 'state_dict')), {
        'a': 1
    }),
    ({
        'model': 'vit',
        'w': 1
    }, {}, {
        'model': 'vit',
        'w': 1
    }),
    ({
        'module.clip.w': 1,
        'clip.v': 2
    }, dict(prefixes=('module.', 'clip.')), {
        'w': 1,
        'v': 2
    }),
    ({
        'backbone.w': 1
    }, dict(prefixes=()), {
        'backbone.w': 1
    }),
])
def test_unwrap_state_dict(wrapped, kwargs, expected):
    from mmstop.utils.checkpoint import unwrap_state_dict
    assert unwrap_state_dict(wrapped, **kwargs) == expected


def test_unwrap_state_dict_errors_name_the_source():
    from mmstop.utils.checkpoint import CheckpointError, unwrap_state_dict
    with pytest.raises(CheckpointError, match='x.pth holds a list'):
        unwrap_state_dict([1], source='x.pth')
    with pytest.raises(
            CheckpointError, match=r"x.pth: not a state dict.*\['epoch'\]"):
        unwrap_state_dict({
            'w': torch.ones(1),
            'epoch': 3
        },
                          source='x.pth',
                          tensors_only=True)
    looped = {}
    looped['model'] = looped  # a self-referencing pickle ends, too
    assert unwrap_state_dict(looped) == {'model': looped}
