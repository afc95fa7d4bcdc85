"""Install mmstop, an MMAction2 plugin for STOP (CVPR 2025) and SSP
(NeurIPS 2025).

Every dependency is pinned to a version that resolves from the public
package registry alone:

* torch 2.14.1 + torchvision 0.29.1: the registry only serves CUDA builds of
  torch; they run on CPU. Pinning torch keeps pip from picking a local
  CPU-only torch wheel whose ABI does not match the registry's torchvision
  (open_clip imports torchvision).
* setuptools < 82: mmengine resolves ``mmaction::`` config paths through
  ``pkg_resources``, which setuptools 82 removed; torch >= 2.13 itself
  requires setuptools >= 77.0.3.
* mmcv-lite 2.1.0: mmaction2 1.2.0 rejects mmcv >= 2.2.0; no compiled mmcv
  ops are used.
* importlib_metadata: imported by ``mmaction.utils.dependency`` but missing
  from its metadata.

Extras: ``tests`` (pytest) and ``lint`` (flake8, isort, yapf, codespell, as
configured in setup.cfg; yapf at the version mmengine resolves to).
"""
import os.path as osp
from setuptools import find_packages, setup


def read_version():
    namespace = {}
    with open(osp.join(osp.dirname(__file__), 'mmstop', 'version.py')) as f:
        exec(f.read(), namespace)
    return namespace['__version__']


INSTALL_REQUIRES = [
    'torch==2.14.1',
    'torchvision==0.29.1',
    'setuptools>=77.0.3,<82',
    'numpy>=1.24',
    'mmengine==0.10.7',
    'mmcv-lite==2.1.0',
    'mmaction2==1.2.0',
    'open_clip_torch==3.3.0',
    'decord==0.6.0',
    'importlib_metadata',
]

setup(
    name='mmstop',
    version=read_version(),
    description=('STOP and SSP parameter-efficient video understanding for '
                 'MMAction2'),
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    python_requires='>=3.9',
    install_requires=INSTALL_REQUIRES,
    extras_require={
        'tests': ['pytest==9.2.0'],
        'lint':
        ['flake8==7.1.1', 'isort==5.13.2', 'yapf==0.43.0', 'codespell==2.3.0'],
    },
    license='Apache License 2.0',
    zip_safe=False,
)
