# Optimiser of the official STOP scripts: AdamW, betas (0.9, 0.98), eps
# 1e-6, weight decay 0.2 on everything but biases (CLIP LayerNorms are
# frozen anyway), global-norm clipping at 1.0.
# The learning-rate schedule (10 % linear warm-up from 1e-8, cosine to
# 1e-8) depends on the number of epochs: each config defines its own
# ``param_scheduler``.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.2),
    paramwise_cfg=dict(bias_decay_mult=0.0),
    clip_grad=dict(max_norm=1.0, norm_type=2))

val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
