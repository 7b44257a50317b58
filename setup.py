"""mmxai: spatio-temporal explanations for MMAction2 recognizers."""
import os.path as osp
from importlib import metadata

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
MMCV_RANGE = '>=2.0.0rc4,<2.2.0'  # what mmaction2 1.2.x accepts


def _mmcv_requirement() -> str:
    """Keep a full mmcv where one is installed; else take mmcv-lite.

    Requiring ``mmcv-lite`` next to a full ``mmcv`` would install a second
    distribution of the same ``mmcv`` module over the compiled one.
    """
    try:
        metadata.distribution('mmcv')
        return 'mmcv' + MMCV_RANGE
    except metadata.PackageNotFoundError:
        return 'mmcv-lite' + MMCV_RANGE


def _requirements(name: str) -> list:
    with open(osp.join(HERE, 'requirements', name)) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def _version() -> str:
    scope: dict = {}
    with open(osp.join(HERE, 'mmxai', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmxai',
    version=_version(),
    description='Spatio-temporal explanations (Grad-CAM, Saliency Tubes, '
    'perturbations, ...) for MMAction2 video recognizers',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmxai', 'mmxai.*']),
    python_requires='>=3.9',
    # torch without a pin: an installed torch satisfies it and nothing is
    # upgraded. Install a CPU or CUDA torch yourself first (see README).
    install_requires=['torch>=1.13', _mmcv_requirement()] +
    _requirements('runtime.txt'),
    extras_require={'tests': _requirements('tests.txt')},
    include_package_data=True,
    zip_safe=False,
)
