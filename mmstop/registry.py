# Copyright (c) mmstop contributors. All rights reserved.
"""mmstop registers its components in MMAction2's registries.

Configs keep ``default_scope = 'mmaction'`` and load mmstop through
``custom_imports = dict(imports=['mmstop'], allow_failed_imports=False)``;
every mmstop class is then buildable by its ``type`` name like any MMAction2
component.
"""
from mmaction.registry import (DATA_SAMPLERS, DATASETS, EVALUATOR, HOOKS,
                               LOOPS, METRICS, MODEL_WRAPPERS, MODELS,
                               OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               OPTIMIZERS, PARAM_SCHEDULERS, RUNNERS,
                               TRANSFORMS, VISBACKENDS, VISUALIZERS)

__all__ = [
    'DATA_SAMPLERS', 'DATASETS', 'EVALUATOR', 'HOOKS', 'LOOPS', 'METRICS',
    'MODEL_WRAPPERS', 'MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'OPTIM_WRAPPERS',
    'OPTIMIZERS', 'PARAM_SCHEDULERS', 'RUNNERS', 'TRANSFORMS', 'VISBACKENDS',
    'VISUALIZERS'
]
