"""Dataset readers shared by training and evaluation: retrieval benchmarks (BEIR folders, MIRACL / Mr.TyDi,
mixed pools: `retrieval`), training examples (JSONL, TSV, BEIR, Hugging Face, tfds: `examples`), parallel
text, and the hub layouts of MIRACL and WebFAQ (`hub`)."""
