"""notebooks/explore_recommendations.ipynb executes headless against a small registered warehouse."""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "explore_recommendations.ipynb"


def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs before committing"


def _text(cell) -> str:
    out = []
    for o in cell.get("outputs", []):
        out.append(o.get("text", ""))
        out.append(str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_notebook_runs_against_the_catalog(registered_warehouse, monkeypatch):
    from tests.warehouse import plain_env

    for key, value in plain_env(LFR_CONF=registered_warehouse.lfr_conf).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PYSPARK_PYTHON", raising=False)
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=1200, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    text = [_text(c) for c in nb.cells if c.cell_type == "code"]
    joined = "\n".join(text)
    assert "catalog: hive" in joined
    # the film's books: the latest run (hybrid) ranks the novel first
    top = next(t for t in text if "Jurassic Park: 3 books" in t)
    assert "Michael Crichton" in top and "Science Fiction" in top and "hybrid" in top
    # both runs found in the Delta history and compared
    assert "'hybrid': 1" in joined and "'dense': 0" in joined
    assert "dense (v0)" in joined and "hybrid (v1)" in joined
    assert "'books_recommended': 5" in joined          # popularity skew over the 5 recommended books
    assert "lightfusionrec" in joined and "no evaluation report" not in joined
    # k-occurrence of the latest run's top lists (3 films): b1, b3, b4, b5 in 2 lists each, b2 in 1
    occurrence = next(t for t in text if "k-occurrence over the top 10:" in t)
    assert "'films': 3, 'books': 5, 'max_films_per_book': 2, 'max_share': 0.6667" in occurrence
    assert "'never_recommended': 0.0, 'gini': 0.089" in occurrence       # Gini of 1, 2, 2, 2, 2
    hubs = next(t for t in text if "top hub books" in t)
    assert hubs.index("b1") < hubs.index("b3") < hubs.index("b4") < hubs.index("b5") < hubs.index("b2")
    assert "Congo" in hubs and "0.6667" in hubs
    figs = registered_warehouse.work_dir / "reports"
    for name in ("notebook_score_distribution.png", "notebook_popularity_skew.png", "notebook_hub_occurrence.png",
                 "notebook_eval_ranks.png"):
        assert (figs / name).stat().st_size > 1000, name
    images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert images == 4
