"""Config section `export`: the Hugging Face / SparseEncoder folder written at the end of a run."""
from __future__ import annotations

from sembridge_jax.schema import Field, Section
from sembridge_jax.storage import location_problem

EXPORT = Section({
    "enabled": Field(True, "write a Hugging Face / sentence-transformers folder at the end"),
    "dir": Field("", "'' = <workdir>/export; local or an object-store URL", path="output", check=location_problem),
})
