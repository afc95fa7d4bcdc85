# Optimiser of the official SSP scripts: AdamW, betas (0.9, 0.999), eps
# 1e-8, weight decay 0.05, no gradient clipping, bf16 mixed precision with
# fp32 master weights.
#
# No weight decay (official ``get_parameter_groups``) for 1-D tensors, names
# ending in ``.bias`` and the position embeddings / CLS token (frozen anyway):
# that covers every bias, ``norm_f.weight``, the SSP ``dynamic_scales`` and
# prompt ``scale`` scalars and the attention ``in_proj_bias``. Decay 0.05 on
# every >= 2-D weight. The official ``--layer_decay 0.8`` has no effect on
# VideoMamba (every trainable tensor gets scale 1), so there is none here.
#
# bf16: ``AmpOptimWrapper`` autocasts the forward to bfloat16 on the GPU; the
# residual stream and the scan state stay fp32 inside VideoMamba. bf16 needs
# no loss scaling (the official DeepSpeed bf16 run has none): the fixed scale
# 1.0 keeps the GradScaler inert. ``tools/train.py --amp`` keeps this wrapper
# (it only fills in a missing loss_scale). AmpOptimWrapper needs a GPU; for
# fp32 / CPU training replace the whole ``optim_wrapper`` (``_delete_=True``)
# as configs/ssp_videomamba_demo.py does.
#
# The learning rate, its schedule and gradient accumulation depend on the
# dataset: each config sets ``optimizer.lr``, ``accumulative_counts`` and
# ``param_scheduler``.
# ``tools/train.py --amp`` on a config that replaced the wrapper (the CPU
# demo) autocasts to this dtype
amp_dtype = 'bfloat16'
optim_wrapper = dict(
    type='AmpOptimWrapper',
    dtype='bfloat16',
    loss_scale=1.0,
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=0.05),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),  # also temporal_pos_embedding
            'cls_token': dict(decay_mult=0.0),
        }))

val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
