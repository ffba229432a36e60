"""Config section `model`: numerics, SPLADE head and input lengths of the encoder being trained."""
from __future__ import annotations

from sembridge_jax.models.config import DTYPES, REMAT_POLICIES
from sembridge_jax.models.heads import POOLINGS
from sembridge_jax.schema import Field, Section

# Upper bound on any input length when the model is not known yet (the longest position tables of the
# supported families: 8194 positions of XLM-R-large-style bge-m3); the source model's own table is checked
# at config time too (config.py).
MAX_TOKENS = 8192
QUERY_ENCODERS = ("splade", "idf")

MODEL = Section({
    "dtype": Field("float32", "compute dtype (parameters stay float32)", choices=DTYPES),
    "splade_pooling": Field("max", "'max' (SPLADE-max) | 'sum' (SPLADE v1)", choices=POOLINGS),
    "splade_chunk_size": Field(0, "sequence chunk for the [L, V] logits; 0 = no chunking", ge=0),
    "remat_policy": Field("head", "what the backward pass recomputes (memory for compute): nothing, the head's "
                          "chunks, + each layer but its matmuls, + each whole layer", choices=REMAT_POLICIES),
    "max_query_length": Field(64, "static query length in tokens, specials included (pad/truncate)", ge=3,
                              le=MAX_TOKENS),
    "max_doc_length": Field(256, "static document length in tokens", ge=3, le=MAX_TOKENS),
    # How the trained model is served; training is the same either way (training.run_settings.FREE).
    "query_encoder": Field("splade", "queries at evaluation and in the export: 'splade' (the model) | 'idf' "
                           "(inference-free: each query token at its IDF over model.idf_corpus, idf.json in the "
                           "export; models/query_weights.py; in the connector route the LexEcho block's weights, "
                           "the English block staying the model's)", choices=QUERY_ENCODERS),
    "idf_corpus": Field("", "the documents the 'idf' query weights count: a BEIR folder or corpus.jsonl, or a "
                        "text file with one document per line; '' = the training documents (data.train.corpus, "
                        "else the corpus of data.train.path)", path="input"),
})
