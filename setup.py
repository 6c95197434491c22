"""modelscope-paraformer: native Paraformer ASR (offline + streaming, fine-tuning) as a ModelScope plugin."""
from pathlib import Path

from setuptools import find_packages, setup

# torch is deliberately NOT pinned to an exact build here: install torch first (see README), e.g.
# `pip install torch==2.13.0`; a bare `torch` requirement resolved by pip alone would pull the CUDA wheels.
setup(
    name="modelscope-paraformer",
    version="0.1.0",
    description="Native PyTorch Paraformer (offline + streaming ASR, fine-tuning) as a ModelScope plugin",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.9",
    packages=find_packages(include=["modelscope_paraformer", "modelscope_paraformer.*"]),
    package_data={"modelscope_paraformer": ["demo_model/*", "serving/static/*"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "numpy",
        "soundfile",
        "librosa",
        "soxr>=0.3",  # librosa's resampler; used directly for stateful stream resampling
        "kaldiio",
        "kaldi-native-fbank>=1.19",
        "pyyaml",
        "tqdm",
        "onnxruntime>=1.17",  # the engine of exported ONNX dirs
        "jieba>=0.42",  # word segmentation of the ct-punc punctuation model (as FunASR's)
    ],
    extras_require={
        "modelscope": ["modelscope[framework]>=1.9"],
        "train": ["pypinyin>=0.50"],
        "export": ["onnx>=1.15"],  # ONNX export and int8 quantisation (onnxruntime.quantization reads onnx)
        "serve": ["websockets>=13"],  # the WebSocket server (python -m modelscope_paraformer serve)
        "gradio": ["gradio>=4"],  # app.py: the ModelScope Studio / Hugging Face Spaces demo
        "test": ["modelscope[framework]>=1.9", "pytest", "funasr==1.4.16", "onnx>=1.15", "nbclient", "nbformat",
                 "ipykernel", "pypinyin>=0.50", "websockets>=13", "selenium>=4.11"],
    },
    entry_points={"console_scripts": ["modelscope-paraformer=modelscope_paraformer.__main__:main"]},
)
