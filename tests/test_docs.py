"""The documentation states what the code does: the init-method table of docs/methods.md is the
registry's, and no module cites a document the repository does not hold."""
import re
from pathlib import Path

from sembridge_jax.bridge.methods import methods_table

REPO = Path(__file__).resolve().parents[1]


def test_methods_table_is_the_registry():
    text = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- BEGIN METHODS -->\n(.*?)<!-- END METHODS -->", text, re.S)
    assert block, "docs/methods.md lost its <!-- BEGIN METHODS --> / <!-- END METHODS --> markers"
    assert block.group(1) == methods_table(), "refresh the table: python -m sembridge_jax.bridge methods"


def test_cited_documents_exist():
    cited = set()
    for path in [*REPO.glob("sembridge_jax/**/*.py"), *REPO.glob("configs/*.py"), REPO / "train.py",
                 REPO / "evaluate.py"]:
        cited |= set(re.findall(r"\b(docs/[\w-]+\.md|[A-Z][A-Z_]*\.md)\b", path.read_text(encoding="utf-8")))
    missing = sorted(c for c in cited if not (REPO / c).is_file() and not (REPO / "docs" / c).is_file())
    assert missing == [], f"modules cite documents the repository does not hold: {missing}"
