# Copyright (c) mmstop contributors. All rights reserved.
"""Parameters and MACs of mmstop configs, per test view.

    python tools/analysis/get_flops.py configs/stop_clip_ucf101.py [...]
    python tools/analysis/get_flops.py configs/*.py --markdown  # README table
    python tools/analysis/get_flops.py CONFIG --json out.json

For every config it prints

* the total and the trainable parameters of the model it builds;
* **MACs per view**: multiply-accumulates of one test view through the
  model (backbone, neck and classifier; for STOP the cosine against the
  cached class embeddings). The convention is fvcore's / MMEngine's: one
  fused multiply-add counts once, elementwise operators, activations and
  reductions are not counted; GFLOPs = 2 x GMACs;
* **MACs per forward**: what a forward costs once whatever its batch
  (STOP's DGL prompt generator: its prompts do not depend on the input);
  a test batch holds the views of one or more videos. Both are measured
  as the difference between a batch of two and of one;
* **views per test** and the **input of one view**, found by running the
  config's test pipeline on a synthetic video;
* for STOP, the MACs of encoding one sentence with the prompted text
  encoder (a class name for recognition, counted once per label set; a
  caption for retrieval), at the sentence length the model uses.

MACs are counted by :class:`mmstop.utils.flops.MACCounter` on the ``meta``
device (the model computes nothing, so full-size models take a second).
A forward that needs values (STOP paper mode chooses its number of
inter-frame prompts from the video) is counted on the CPU with a random
input instead (``counted on`` says which). MMAction2's
``tools/analysis_tools/get_flops.py`` traces the model and drops the
operators whose results the output does not use, and it counts
``extract_feat``, which for STOP recognizers also encodes every class name:
see the README section "FLOPs and parameters".

A STOP recognition config whose class-name file does not exist is counted
with placeholder class names (``num_classes`` of the config, else 1); the
classifier adds ``embed_dims`` MACs per class (512 for ViT-B/32).
"""
import argparse
import copy
import json
import os.path as osp
import sys
import tempfile
from typing import Dict, List, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if osp.isdir(osp.join(REPO_ROOT, 'mmstop')) and REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import mmstop  # noqa: E402,F401  (registers modules, applies compat patches)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.dataset import Compose  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from mmaction.registry import MODELS  # noqa: E402
from mmstop.datasets.demo import write_video  # noqa: E402
from mmstop.models import STOPSimilarity  # noqa: E402
from mmstop.utils import resolve_config  # noqa: E402
from mmstop.utils.flops import MACCounter  # noqa: E402

#: The synthetic video the test pipelines run on: frames and (width,
#: height), longer and larger than any shipped pipeline samples or crops.
PROBE_FRAMES = 300
PROBE_SIZE = (320, 256)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Parameters and MACs per test view of mmstop configs')
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument(
        '--device', choices=['auto', 'meta', 'cpu'], default='auto',
        help="where the model runs while its MACs are counted: 'meta' "
        "(computes nothing), 'cpu' (a random input), 'auto' (meta, or cpu "
        'when the forward needs values; default)')
    parser.add_argument('--markdown', action='store_true',
                        help='print a markdown table (the README\'s)')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the results to this JSON file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config entries of every config, key=value')
    return parser.parse_args(argv)


def write_probe_video(path: str) -> str:
    """Write the synthetic video the test pipelines are run on."""
    rng = np.random.default_rng(0)
    width, height = PROBE_SIZE
    frames = [
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for _ in range(PROBE_FRAMES)
    ]
    write_video(path, frames, fps=30.)
    return path


def load_config(path: str, cfg_options: Optional[dict] = None) -> Config:
    """Read ``path`` and apply ``cfg_options`` (re-deriving the fields of
    overridden top-level variables)."""
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        cfg = resolve_config(cfg)
    return cfg


def probe_test_pipeline(cfg: Config,
                        video: str) -> Tuple[int, tuple, Optional[int]]:
    """Run the config's test pipeline on ``video``.

    Returns:
        tuple: The number of views, the shape of one view as the model
        takes it (``C, T, H, W``; retrieval models ``T, C, H, W``) and the
        caption length in tokens (retrieval pipelines; else None).
    """
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    packed = pipeline(
        dict(filename=video, label=-1, start_index=0, modality='RGB',
             text='a video'))
    inputs = packed['inputs']
    text_ids = packed['data_samples'].get('text_ids')
    text_length = None if text_ids is None else int(text_ids.shape[-1])
    if cfg.model.type == 'STOPSimilarity':  # NCHW: one clip of T frames
        return 1, tuple(inputs.shape), text_length
    return int(inputs.shape[0]), tuple(inputs.shape[1:]), text_length


def counting_model_cfg(cfg: Config) -> Tuple[dict, Optional[str]]:
    """The model config to count, and a note on what was replaced.

    Training-only batch augmentations (``data_preprocessor.blending``:
    Mixup/CutMix, whose parameters are checked with ``.item()``, which the
    meta device cannot do) are dropped; a STOP class-name file that does not
    exist is replaced by placeholder names.
    """
    model = copy.deepcopy(cfg.model)
    if isinstance(model.get('data_preprocessor'), dict):
        model.data_preprocessor.pop('blending', None)
    note = None
    head = model.get('cls_head') or {}
    names = head.get('class_names')
    if isinstance(names, str) and not osp.isfile(names):
        count = head.get('num_classes') or cfg.get('num_classes') or 1
        head.class_names = [f'class {i}' for i in range(count)]
        head.num_classes = count
        note = (f'class-name file {names} not found: counted with {count} '
                'placeholder class name(s)')
    return model, note


def build(model_cfg: dict, device: str) -> torch.nn.Module:
    """Build the model on ``device`` in eval mode."""
    with torch.device(device):
        model = MODELS.build(model_cfg)
    return model.eval()


def views_forward(model: torch.nn.Module, views: torch.Tensor) -> None:
    """A batch of test views ``[n, ...]`` through the model, as its test
    step runs them (one video's views are one batch)."""
    if isinstance(model, STOPSimilarity):
        model.extract_feat(views)
        return
    feats, kwargs = model.extract_feat(views[None], test_mode=True)
    if getattr(model, 'with_cls_head', False):
        model.cls_head(feats, **kwargs)


def marginal_macs(run, device: str) -> Tuple[int, int]:
    """MACs per item and per call of ``run(n)``, from ``n = 1`` and ``2``.

    A STOP forward runs the DGL prompt generator once, whatever the batch
    (the prompts do not depend on the input): that part is the fixed cost
    per call; the rest grows with every view or sentence.

    Returns:
        tuple[int, int]: ``(per item, fixed per call)``.
    """
    counts = []
    for n in (1, 2):
        with torch.no_grad(), MACCounter() as counter:
            run(n)
        counts.append(counter.total)
    return counts[1] - counts[0], 2 * counts[0] - counts[1]


def count_views(model: torch.nn.Module, view_shape: tuple,
                device: str) -> Tuple[int, int]:
    """MACs per test view and per forward (:func:`marginal_macs`).

    STOP's class embeddings are computed (and cached, as at test time)
    before counting: they are computed once per label set.
    """
    generator = torch.Generator().manual_seed(0)
    views = torch.randn((2, ) + tuple(view_shape),
                        generator=generator).to(device)
    if hasattr(model, 'class_embeddings'):
        with torch.no_grad():
            model.class_embeddings()
    return marginal_macs(lambda n: views_forward(model, views[:n]), device)


def count_text(model: torch.nn.Module, length: int,
               device: str) -> Tuple[int, int]:
    """MACs per sentence of ``length`` tokens and per call of the text
    encoder (:func:`marginal_macs`)."""
    ids = torch.zeros(2, length, dtype=torch.long, device=device)
    ids[:, 0], ids[:, 1] = 49406, 49407  # SOT, EOT (the largest id)
    return marginal_macs(lambda n: model.backbone.encode_text(ids[:n]),
                         device)


def count_params(model: torch.nn.Module) -> Tuple[int, int]:
    """Total and trainable (``requires_grad``) parameters."""
    params = list(model.parameters())
    return (sum(p.numel() for p in params),
            sum(p.numel() for p in params if p.requires_grad))


def analyse(path: str, video: str, device: str = 'auto',
            cfg_options: Optional[dict] = None) -> Dict:
    """Everything :func:`main` reports for one config.

    Args:
        path (str): Config file.
        video (str): A video file the test pipeline can read
            (:func:`write_probe_video`).
        device (str): ``'meta'``, ``'cpu'`` or ``'auto'`` (see the module
            doc). Defaults to ``'auto'``.
        cfg_options (dict, optional): Config overrides. Defaults to None.

    Returns:
        dict: ``config``, ``task``, ``model``, ``num_frames``, ``view_shape``,
        ``views_per_test``, ``params``, ``trainable_params``,
        ``macs_per_view``, ``macs_per_forward`` (the fixed cost of one
        forward, whatever its batch: STOP's prompt generator),
        ``text_length`` and ``text_macs`` (per sentence; STOP, else None),
        ``counted_on`` and ``notes``.
    """
    cfg = load_config(path, cfg_options)
    views, view_shape, caption_length = probe_test_pipeline(cfg, video)
    model_cfg, note = counting_model_cfg(cfg)
    notes = [note] if note else []
    devices = ['meta', 'cpu'] if device == 'auto' else [device]
    for index, dev in enumerate(devices):
        model = build(model_cfg, dev)
        try:
            macs, fixed = count_views(model, view_shape, dev)
        except (NotImplementedError, RuntimeError) as exc:
            if index + 1 == len(devices):
                raise
            reason = str(exc).splitlines()[0][:120]
            notes.append(f'counted on the CPU with a random input, the '
                         f'forward needs values: {reason}')
            continue
        break
    retrieval = isinstance(model, STOPSimilarity)
    text_length = text_macs = None
    if hasattr(getattr(model, 'backbone', None), 'encode_text'):
        text_length = (caption_length if retrieval else int(
            model.cls_head.class_token_ids.shape[1]))
        text_macs, _ = count_text(model, text_length, dev)
    total, trainable = count_params(model)
    backbone = getattr(model, 'backbone', None)
    return dict(
        config=osp.relpath(path) if not osp.isabs(path) else path,
        task='retrieval' if retrieval else 'recognition',
        model=f'{type(model).__name__} / {type(backbone).__name__}',
        num_frames=int(view_shape[0 if retrieval else 1]),
        view_shape=list(view_shape),
        views_per_test=views,
        params=total,
        trainable_params=trainable,
        macs_per_view=macs,
        macs_per_forward=fixed,
        text_length=text_length,
        text_macs=text_macs,
        counted_on=dev,
        notes=notes)


def _giga(value: Optional[int]) -> str:
    """Giga-units to 4 significant digits ('-' for None)."""
    return '-' if value is None else f'{value / 1e9:.4g}'


def markdown_table(rows: List[Dict]) -> str:
    """The rows as the README's markdown table; notes become numbered
    footnotes."""
    lines = [
        '| config | task | frames | views per test | parameters | '
        'trainable | GMACs per view | GMACs per forward | '
        'text GMACs per sentence |',
        '|---|---|---|---|---|---|---|---|---|'
    ]
    footnotes: List[str] = []
    for row in rows:
        marks = []
        for note in row['notes']:
            kind = note.split(':')[0].split(',')[0]
            if kind not in footnotes:
                footnotes.append(kind)
            marks.append(str(footnotes.index(kind) + 1))
        mark = f" ({', '.join(marks)})" if marks else ''
        text = '-' if row['text_macs'] is None else (
            f"{_giga(row['text_macs'])} ({row['text_length']} tokens)")
        lines.append(
            f"| `{row['config']}`{mark} | {row['task']} | "
            f"{row['num_frames']} | {row['views_per_test']} | "
            f"{row['params']:,} | {row['trainable_params']:,} | "
            f"{_giga(row['macs_per_view'])} | "
            f"{_giga(row['macs_per_forward'] or None)} | {text} |")
    if footnotes:
        lines.append('')
        lines += [f'({i}) {kind}' for i, kind in enumerate(footnotes, 1)]
    return '\n'.join(lines)


def text_table(rows: List[Dict]) -> str:
    """The rows as a plain-text report."""
    out = []
    for row in rows:
        out.append(
            f"{row['config']}: {row['task']}, {row['model']}\n"
            f"  parameters {row['params']:,} (trainable "
            f"{row['trainable_params']:,})\n"
            f"  input per view {' x '.join(map(str, row['view_shape']))}, "
            f"{row['views_per_test']} view(s) per test\n"
            f"  MACs per view {row['macs_per_view']:,} "
            f"({_giga(row['macs_per_view'])} GMACs, "
            f"{2 * row['macs_per_view'] / 1e9:.2f} GFLOPs), counted on "
            f"{row['counted_on']}\n"
            f"  MACs per forward (any batch) {row['macs_per_forward']:,}")
        if row['text_macs'] is not None:
            out.append(f"  text encoder MACs per sentence "
                       f"({row['text_length']} tokens) "
                       f"{row['text_macs']:,}")
        out += [f'  note: {note}' for note in row['notes']]
    return '\n'.join(out)


def main(argv=None) -> List[Dict]:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = write_probe_video(osp.join(tmp, 'probe.mp4'))
        for path in args.configs:
            rows.append(analyse(path, video, args.device, args.cfg_options))
    if args.markdown:
        print(markdown_table(rows))
    else:
        print(text_table(rows))
    print('MACs: multiply-accumulates (one fused multiply-add counts once); '
          'GFLOPs = 2 x GMACs.')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
