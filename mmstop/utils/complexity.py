# Copyright (c) mmstop contributors. All rights reserved.
"""Parameters and MACs of a config's model, per test view
(``tools/analysis/get_flops.py``, ``tools/misc/update_model_zoo.py``).

:func:`analyse` reports for a config

* the total and the trainable parameters of the model it builds;
* the MACs of one test view through the model (backbone, neck and
  classifier; for STOP the cosine against the cached class embeddings),
  and the MACs a forward costs once whatever its batch (STOP's DGL prompt
  generator: its prompts do not depend on the input), both measured as the
  difference between a batch of two and of one (:func:`marginal_macs`);
* the views per test and the input of one view, found by running the
  config's test pipeline on a synthetic video (:func:`probe_test_pipeline`);
* for STOP, the MACs of encoding one sentence with the prompted text encoder
  (a class name for recognition, once per label set; a caption for
  retrieval), at the sentence length the model uses.

The convention is fvcore's / MMEngine's (:mod:`mmstop.utils.flops`): one
fused multiply-add counts once; GFLOPs = 2 x GMACs. MACs are counted by
:class:`~mmstop.utils.flops.MACCounter` on the ``meta`` device (the model
computes nothing); a forward that needs values (STOP paper mode chooses its
number of inter-frame prompts from the video) is counted on the CPU with a
random input instead. A STOP recognition config whose class-name file does
not exist is counted with placeholder class names (``num_classes`` of the
config, else 1; the classifier adds ``embed_dims`` MACs per class).
"""
import copy
import os.path as osp
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from mmengine.config import Config

from mmstop.datasets.inference import load_test_sample
from mmstop.models.similarity import STOPSimilarity
from mmstop.registry import MODELS
from .config import load_config
from .flops import MACCounter

#: The kinds of note :func:`analyse` attaches (``'<kind>: <details>'``).
PLACEHOLDER_CLASSES = 'placeholder class names'
CPU_COUNT = 'counted on the CPU with a random input'

__all__ = [
    'CPU_COUNT', 'PLACEHOLDER_CLASSES', 'analyse', 'count_params',
    'count_text', 'count_views', 'counting_model_cfg', 'marginal_macs',
    'probe_test_pipeline', 'views_forward', 'write_probe_video'
]

#: The synthetic video the test pipelines run on: frames and (width,
#: height), longer and larger than any shipped pipeline samples or crops.
PROBE_FRAMES = 300
PROBE_SIZE = (320, 256)


def write_probe_video(path: str) -> str:
    """Write the synthetic video the test pipelines are run on.

    Args:
        path (str): The mp4 file to write.

    Returns:
        str: ``path``.
    """
    from mmstop.datasets.demo import write_video
    rng = np.random.default_rng(0)
    width, height = PROBE_SIZE
    frames = [
        rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for _ in range(PROBE_FRAMES)
    ]
    write_video(path, frames, fps=30.)
    return path


def probe_test_pipeline(cfg: Config,
                        video: str) -> Tuple[int, tuple, Optional[int]]:
    """Run the config's test pipeline on ``video``.

    Returns:
        tuple: The number of views, the shape of one view as the model
        takes it (``C, T, H, W``; retrieval models ``T, C, H, W``) and the
        caption length in tokens (retrieval pipelines; else None).
    """
    packed = load_test_sample(cfg, video)
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
        note = (f'{PLACEHOLDER_CLASSES}: {names} not found, counted with '
                f'{count} placeholder class name(s)')
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
    views = torch.randn(
        (2, ) + tuple(view_shape), generator=generator).to(device)
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
    return marginal_macs(lambda n: model.backbone.encode_text(ids[:n]), device)


def count_params(model: torch.nn.Module) -> Tuple[int, int]:
    """Total and trainable (``requires_grad``) parameters."""
    params = list(model.parameters())
    return (sum(p.numel() for p in params),
            sum(p.numel() for p in params if p.requires_grad))


def analyse(path: str,
            video: str,
            device: str = 'auto',
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
        try:
            # seeded weights (without touching the caller's RNG): a forward
            # that needs values counts the same every time
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = build(model_cfg, dev)
                macs, fixed = count_views(model, view_shape, dev)
        except (NotImplementedError, RuntimeError) as exc:
            if index + 1 == len(devices):
                raise
            reason = str(exc).splitlines()[0][:120]
            notes.append(f'{CPU_COUNT}: the forward needs values '
                         f'({reason})')
            continue
        break
    retrieval = isinstance(model, STOPSimilarity)
    text_length = text_macs = None
    # text cost where the text tower runs: retrieval, or a head that
    # classifies through class texts (not a linear probe of a CLIP)
    reads_text = retrieval or hasattr(
        getattr(model, 'cls_head', None), 'class_token_ids')
    if reads_text and hasattr(getattr(model, 'backbone', None), 'encode_text'):
        text_length = (
            caption_length
            if retrieval else int(model.cls_head.class_token_ids.shape[1]))
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
