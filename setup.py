"""SPARC and AvisC, reproduced on transformers 5 (packages `sparc`, `avisc`, `eval`).

`pip install -r requirements.txt` installs this project and `LLaVA/` (both editable). `pip install -e .` alone also
works: the `llava` package is mapped from `LLaVA/llava`, so a plain editable install of this project imports it too.
"""
from setuptools import find_packages, setup

setup(
    name="sparc-avisc",
    version="0.1.0",
    description="Faithful, fast reproductions of SPARC and AvisC (with VCD and M3ID) for LLaVA-1.5, LLaVA-NeXT and InstructBLIP",
    python_requires=">=3.10",
    packages=find_packages(include=["sparc*", "avisc*", "eval*"]) + find_packages("LLaVA", include=["llava*"]),
    package_dir={"llava": "LLaVA/llava"},
    package_data={"eval": ["data/**/*"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.4",
        "transformers>=5.23,<6",
        "accelerate>=1.0",
        "safetensors",
        "pillow",
        "numpy",
        "tqdm",
        "nltk>=3.9",
        "pycocotools",
        "openai>=1.0",
        "matplotlib",
        "pytest",
    ],
)
