"""naver/splade-v3 -> Russian (the paper's setting; needs the HF hub, an HF_TOKEN and an accelerator).

Command:
  HF_TOKEN=hf_... python train.py --config configs/ru_splade.py --workdir runs/ru_splade

miracl/miracl and miracl/miracl-corpus are gated: accept their terms on the two hub pages and set HF_TOKEN
(or `huggingface-cli login`) on every host, or the run stops at the evaluation set, naming the repo.

Expected (paper, mean over ar/zh/hi/ko/ru, nDCG@10): SemBridge zero-shot MIRACL 0.179,
after WebFAQ fine-tuning 0.319 (multivariate Gaussian init: 0.104 / 0.307). Not reproduced here.

What has run: the Korean config (configs/ko_splade.py) end to end against a local hub with the real
file layouts (tests/test_paper_config_hub.py); this file shares everything with it but the language.
Not run: this language's tokenizer (DeepPavlov/rubert-base-cased), WebFAQ subset and MIRACL split
(the local hub does not serve them); real weights, real data sizes, an accelerator.
"""

from . import common


def get_config():
    return common.paper_config("ru")
