"""naver/splade-v3 -> Arabic (the paper's setting; needs the HF hub and an accelerator).

Command:
  python train.py --config configs/ar_splade.py --workdir runs/ar_splade

Expected (paper, mean over ar/zh/hi/ko/ru, nDCG@10): SemBridge zero-shot MIRACL 0.179,
after WebFAQ fine-tuning 0.319 (multivariate Gaussian init: 0.104 / 0.307). Not yet
reproduced here: the hub is unreachable in development.
"""

from . import common


def get_config():
    return common.paper_config("ar")
