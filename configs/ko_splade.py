"""naver/splade-v3 -> Korean (the paper's setting; needs the HF hub, an HF_TOKEN and an accelerator).

Command:
  HF_TOKEN=hf_... python train.py --config configs/ko_splade.py --workdir runs/ko_splade

miracl/miracl and miracl/miracl-corpus are gated: accept their terms on the two hub pages and set HF_TOKEN
(or `huggingface-cli login`) on every host, or the run stops at the evaluation set, naming the repo.

Expected (paper, mean over ar/zh/hi/ko/ru, nDCG@10): SemBridge zero-shot MIRACL 0.179,
after WebFAQ fine-tuning 0.319 (multivariate Gaussian init: 0.104 / 0.307). Not reproduced here.

What has run (tests/test_paper_config_hub.py): this file, unchanged but for sizes, end to end against a
local hub that serves tiny random stand-ins with the real file layouts of naver/splade-v3,
monologg/kobigbird-bert-base, BAAI/bge-m3, PaDaS-Lab/webfaq (kor) and the gated miracl/miracl +
miracl/miracl-corpus (ko: topics, qrels, 3 corpus shards):
  python train.py --config configs/ko_splade.py --config.train.num_steps=4 --config.train.batch_size=2 \
      --config.train.warmup_steps=0 --config.train.eval_every=2 --config.checkpoint.every_steps=2 \
      --config.data.train.max_examples=2 --config.data.dev.max_queries=3 --config.eval.max_queries=5 \
      --config.model.max_query_length=16 --config.model.max_doc_length=32
downloads, the bge-m3 alignment (sentence-transformers), zero-shot MIRACL evaluation, WebFAQ fine-tuning
with dev evaluations, evaluation and export for SemBridge and the three compared methods; then evaluate.py
on MIRACL (checkpoint and export agree with the run's table). Not run: the real weights (splade-v3,
bge-m3 568 M parameters), the real data sizes (all of WebFAQ kor; MIRACL ko dev over its ~1.5 M passages),
an accelerator, and so the paper's numbers.

A first run on the real hub can be sized down the same way: --config.data.train.max_examples=N streams
only the first N WebFAQ rows; --config.eval.max_docs=N and --config.data.dev.max_docs=N stop downloading
MIRACL corpus shards once the judged passages and N passages in all are in.
"""

from . import common


def get_config():
    return common.paper_config("ko")
