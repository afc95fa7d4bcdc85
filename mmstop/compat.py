# Copyright (c) mmstop contributors. All rights reserved.
"""Work-arounds for gaps in the pinned OpenMMLab / PyTorch stack.

Every patch here is applied once by :func:`apply_patches` (called from
``mmstop/__init__.py``), is idempotent, and only changes behaviour in the
situation it names:

* **mmaction2 1.2.0 wheel without** ``mmaction/models/localizers/drn``. The
  published wheel and sdist omit that directory (it has ``.py`` files but no
  ``__init__.py`` upstream, so ``find_packages`` skipped it), yet
  ``mmaction/models/localizers/__init__.py`` does ``from .drn.drn import DRN``:
  ``import mmaction.models`` fails with ``ModuleNotFoundError``. We register an
  empty placeholder package so the import succeeds; the DRN localizer itself
  stays unavailable (``DRN`` is ``None``). Upstream:
  open-mmlab/mmaction2, ``setup.py`` packaging of ``localizers/drn`` in 1.2.0.
* **torch >= 2.6 defaults ``torch.load(weights_only=True)``**, which cannot
  unpickle MMEngine checkpoints (they hold ``HistoryBuffer`` and numpy
  scalars): resume, ``load_from`` and ``tools/test.py CKPT`` fail. MMEngine's
  local (and http) checkpoint loaders are re-registered to read with
  :func:`mmstop.utils.checkpoint.safe_torch_load`: still
  ``weights_only=True``, with exactly the types MMEngine checkpoints hold
  allow-listed for the call, so no file can run code when it is loaded.
  Full unpickling needs the explicit ``unsafe://`` path prefix.
* **bf16 scores in MMAction2's heads.** ``BaseHead.loss_by_feat`` computes
  the training accuracy with ``cls_scores.detach().cpu().numpy()``, which
  raises ``TypeError: Got unsupported ScalarType BFloat16`` under bf16
  autocast (``--amp`` with ``dtype='bfloat16'``, SSP's recipe). The scores
  are cast to fp32 before it runs (the cross-entropy is computed in fp32
  under autocast anyway, so the loss is unchanged).
* **torchrun on CPU.** MMEngine's PyTorch launcher always calls
  ``torch.cuda.set_device`` and MMEngine wraps models in DDP with
  ``device_ids=[LOCAL_RANK]``; both fail without CUDA. On machines without
  CUDA the process group is initialised with ``gloo`` and ``device_ids`` is
  dropped for CPU modules. GPU runs are untouched.
* **FLOP counting.** MMEngine's ``FlopAnalyzer`` (MMAction2's
  ``tools/analysis_tools/get_flops.py``) has no handle for the selective
  scan of VideoMamba (traced as the single operator
  ``mmstop::selective_scan``) or for
  ``aten::scaled_dot_product_attention`` (the attention of
  ``nn.MultiheadAttention``), so it skipped their multiply-adds with a
  warning. Handles for both are added to its defaults
  (:func:`mmstop.utils.flops.register_flop_handles`); operators MMEngine
  already counts are unchanged.
"""
import importlib.util
import os
import os.path as osp
import sys
import types

_APPLIED = False


def _patch_mmaction_drn() -> None:
    """Provide ``mmaction.models.localizers.drn`` when the wheel lacks it."""
    spec = importlib.util.find_spec('mmaction')
    if spec is None or spec.origin is None:
        return
    drn_dir = osp.join(osp.dirname(spec.origin), 'models', 'localizers', 'drn')
    if osp.isfile(osp.join(drn_dir, '__init__.py')):
        return  # a complete mmaction2 install: nothing to do
    pkg_name = 'mmaction.models.localizers.drn'
    if pkg_name in sys.modules:
        return
    pkg = types.ModuleType(pkg_name)
    pkg.__path__ = []  # a package, so ``from .drn.drn import`` resolves
    pkg.__doc__ = 'Placeholder: mmaction2 1.2.0 wheels ship without DRN.'
    mod = types.ModuleType(pkg_name + '.drn')
    mod.DRN = None
    pkg.drn = mod
    sys.modules[pkg_name] = pkg
    sys.modules[pkg_name + '.drn'] = mod


def _patch_checkpoint_loader() -> None:
    """Read MMEngine checkpoints with the safe loader (allow-listed
    ``weights_only=True``)."""
    from mmstop.utils.checkpoint import register_checkpoint_loaders
    register_checkpoint_loaders()


def _patch_cpu_distributed() -> None:
    """Let ``torchrun`` + MMEngine run on machines without CUDA (gloo)."""
    import torch
    import torch.distributed as torch_dist
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import distributed as mm_ddp

    original_init = dist_utils._init_dist_pytorch
    if getattr(original_init, '_mmstop_patched', False):
        return

    def _init_dist_pytorch(backend='nccl', init_backend='torch', **kwargs):
        if torch.cuda.is_available() or init_backend != 'torch':
            return original_init(backend, init_backend=init_backend, **kwargs)
        if not torch_dist.is_initialized():
            if backend == 'nccl':
                backend = 'gloo'  # nccl needs CUDA
            torch_dist.init_process_group(
                backend=backend,
                rank=int(os.environ['RANK']),
                world_size=int(os.environ['WORLD_SIZE']),
                **kwargs)

    _init_dist_pytorch._mmstop_patched = True
    dist_utils._init_dist_pytorch = _init_dist_pytorch

    ddp_cls = mm_ddp.MMDistributedDataParallel
    original_ddp_init = ddp_cls.__init__
    if getattr(original_ddp_init, '_mmstop_patched', False):
        return

    def __init__(self, module, detect_anomalous_params=False, **kwargs):
        params = list(module.parameters())
        on_cpu = bool(params) and all(p.device.type == 'cpu' for p in params)
        if on_cpu:
            # torch DDP rejects device_ids / output_device for CPU modules.
            kwargs.pop('device_ids', None)
            kwargs.pop('output_device', None)
        original_ddp_init(
            self,
            module=module,
            detect_anomalous_params=detect_anomalous_params,
            **kwargs)

    __init__._mmstop_patched = True
    ddp_cls.__init__ = __init__


def _patch_head_float_scores() -> None:
    """Hand MMAction2's ``BaseHead.loss_by_feat`` fp32 class scores."""
    from mmaction.models.heads.base import BaseHead

    original = BaseHead.loss_by_feat
    if getattr(original, '_mmstop_patched', False):
        return

    def loss_by_feat(self, cls_scores, data_samples):
        return original(self, cls_scores.float(), data_samples)

    loss_by_feat._mmstop_patched = True
    loss_by_feat.__doc__ = original.__doc__
    BaseHead.loss_by_feat = loss_by_feat


def _patch_flop_handles() -> None:
    """Count the selective scan and SDPA in MMEngine's FLOP analysis."""
    from mmstop.utils.flops import register_flop_handles
    register_flop_handles()


def apply_patches() -> None:
    """Apply every stack work-around once (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_mmaction_drn()
    _patch_checkpoint_loader()
    _patch_cpu_distributed()
    _patch_head_float_scores()
    _patch_flop_handles()
    _APPLIED = True
