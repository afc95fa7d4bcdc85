# mmstop's runtime: MMAction2's default runtime plus the checks that keep a
# run trustworthy (mmstop/engine/hooks, README "Checkpoints, resume and bad
# input"):
#
# * AtomicCheckpointHook: checkpoints are written atomically (temporary file
#   + rename) and the oldest one is only deleted after the new one is
#   written, so a killed run always keeps an intact checkpoint;
# * StrictLoadHook: load_from / --resume / tools/test.py fail on any
#   missing, unexpected or mis-shaped key (allow_mismatch=[patterns] to
#   allow e.g. a new head);
# * NonFiniteCheckHook: a NaN/inf loss or gradient stops the run before the
#   update and before a checkpoint (action='skip' skips the step instead);
# * RandomStateHook: every random state goes into the checkpoints, so
#   --resume continues exactly where an uninterrupted run would be;
# * BadVideoHook: per-epoch count of training videos skipped by datasets
#   with on_bad_video='skip'.
_base_ = ['mmaction::_base_/default_runtime.py']

default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
custom_hooks = [
    dict(type='StrictLoadHook', allow_mismatch=[]),
    dict(type='NonFiniteCheckHook', action='stop'),
    dict(type='RandomStateHook'),
    dict(type='BadVideoHook'),
]
