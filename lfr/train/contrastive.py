"""The ``contrastive`` training recipe: teach the head "this film <-> this book" (``train.recipe``).

Objective: InfoNCE (multiple-negatives ranking). For a batch of known links, each film must pick
its own book out of a candidate set made of

* the other links' books in the batch (in-batch negatives), and
* ``train.hard_negatives`` hard negatives per film mined ONCE from the text-only ranking of the
  whole book catalog, skipping the first ``train.hard_negative_skip`` non-linked books (those are
  often sequels, other editions or genuinely related books, i.e. false negatives);

other links of the same film are masked out, never pushed away. Logits are cosines divided by
``train.temperature``.

Label-free pairs come first (``train.pretrain_epochs``): texts known to describe the same item
(two spans of one long description; a film's IMDb overview and its Wikipedia summary, passed as
``extra_pairs``) with in-batch negatives. They are plentiful, cost no labels, and teach the same
"same story, different wording" invariance the links need.

Selection: validation films (``train.val_fraction`` of the training links' films, held out by film)
are ranked against a fixed pool of books (their linked books + up to ``train.val_books`` others)
after every epoch; the head with the best validation MRR is kept, epoch 0 (the untrained head)
included, and training stops after ``train.patience`` epochs without improvement. With the
residual head, epoch 0 IS the text-only model, so selection cannot return something that was
worse than text-only on the validation films. Weight decay applies to the residual weight only
(``head.decayed_parameters()``), pulling it back towards text-only; the genre projection and
biases are not decayed.

Everything works on precomputed (frozen-encoder) features, so an epoch costs milliseconds.
"""
from __future__ import annotations

import copy
import logging
import math
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.nn import functional as F

from lfr.settings import TrainSettings

log = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass
class Feats:
    """Frozen text features and genre vectors of some items (row-aligned tensors)."""

    text: torch.Tensor
    genre: torch.Tensor

    def rows(self, idx: torch.Tensor) -> "Feats":
        return Feats(self.text[idx], self.genre[idx])

    def __len__(self) -> int:
        return len(self.text)


def span_pairs(texts: Sequence[str | None], min_chars: int = 600) -> list[tuple[str, str]]:
    """Two halves (split at the sentence end nearest the middle) of every text of at least
    ``min_chars`` characters: label-free positives ("the same story, told in two parts")."""
    out = []
    for text in texts:
        if not isinstance(text, str) or len(text) < min_chars:
            continue
        cuts = [m.end() for m in _SENTENCE_END.finditer(text)]
        if not cuts:
            continue
        cut = min(cuts, key=lambda c: abs(c - len(text) / 2))
        a, b = text[:cut].strip(), text[cut:].strip()
        if min(len(a), len(b)) >= min_chars // 4:
            out.append((a, b))
    return out


def mine_hard_negatives(movie_text: torch.Tensor, book_text: torch.Tensor, positives: Mapping[int, set[int]],
                        n_hard: int, skip: int) -> dict[int, torch.Tensor]:
    """Per film row: the book rows ranked ``skip+1 .. skip+n_hard`` by text-only cosine among its
    non-linked books."""
    if n_hard <= 0 or not positives:
        return {}
    rows = sorted(positives)
    m = F.normalize(movie_text[rows], dim=-1)
    b = F.normalize(book_text, dim=-1)
    want = min(len(b), skip + n_hard + max(len(p) for p in positives.values()))
    out = {}
    with torch.no_grad():
        top = torch.topk(m @ b.T, k=want, dim=1).indices
    for k, row in enumerate(rows):
        ranked = [j for j in top[k].tolist() if j not in positives[row]]
        out[row] = torch.tensor(ranked[skip:skip + n_hard], dtype=torch.long)
    return out


def _info_nce_links(head, movies: Feats, books: Feats, batch: np.ndarray, positives: Mapping[int, set[int]],
                    hard: Mapping[int, torch.Tensor], tau: float) -> torch.Tensor:
    """InfoNCE of a batch of links ``(film row, book row)`` over in-batch + hard-negative books."""
    cand = [int(b) for b in batch[:, 1]]
    for m in batch[:, 0]:
        cand += hard.get(int(m), torch.zeros(0, dtype=torch.long)).tolist()
    cand_rows = sorted(set(cand))
    col = {b: j for j, b in enumerate(cand_rows)}
    c_idx = torch.tensor(cand_rows, dtype=torch.long)
    m_idx = torch.tensor(batch[:, 0], dtype=torch.long)
    me = head(movies.text[m_idx], movies.genre[m_idx])
    ce = head(books.text[c_idx], books.genre[c_idx])
    logits = me @ ce.T / tau
    mask = torch.zeros_like(logits, dtype=torch.bool)
    for i, (m, b) in enumerate(batch):
        for other in positives.get(int(m), ()):  # the film's other links are not negatives
            if other != b and other in col:
                mask[i, col[other]] = True
    target = torch.tensor([col[int(b)] for b in batch[:, 1]], dtype=torch.long)
    return F.cross_entropy(logits.masked_fill(mask, float("-inf")), target)


def _info_nce_pairs(head, a: Feats, b: Feats, tau: float) -> torch.Tensor:
    """Symmetric in-batch InfoNCE: row i of ``a`` belongs with row i of ``b``."""
    ea, eb = head(a.text, a.genre), head(b.text, b.genre)
    logits = ea @ eb.T / tau
    target = torch.arange(len(ea))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def validation_mrr(head, movies: Feats, books: Feats, val_pos: Mapping[int, set[int]], pool: torch.Tensor) -> float:
    """Mean over validation films of 1 / rank of their best linked book within ``pool`` (book rows)."""
    if not val_pos:
        return float("nan")
    rows = sorted(val_pos)
    with torch.no_grad():
        me = head(movies.text[rows], movies.genre[rows])
        be = head(books.text[pool], books.genre[pool])
        scores = me @ be.T
    pos_in_pool = {int(b): j for j, b in enumerate(pool.tolist())}
    rr = []
    for k, row in enumerate(rows):
        cols = [pos_in_pool[b] for b in val_pos[row] if b in pos_in_pool]
        best = scores[k, cols].max()
        rr.append(1.0 / (1 + int((scores[k] > best).sum())))  # optimistic ties: rank among strictly better
    return float(np.mean(rr))


def validation_pool(n_books: int, val_pos: Mapping[int, set[int]], size: int, rng: np.random.Generator) -> torch.Tensor:
    """The validation films' books plus up to ``size`` other books (all when ``size`` is None or larger)."""
    linked = sorted({b for bs in val_pos.values() for b in bs})
    if size is None or size >= n_books:
        return torch.arange(n_books)
    others = np.setdiff1d(np.arange(n_books), linked)
    pick = rng.choice(others, size=min(int(size), len(others)), replace=False)
    return torch.tensor(sorted(set(linked) | set(pick.tolist())), dtype=torch.long)


def _optimizer(head, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decayed = list(getattr(head, "decayed_parameters", lambda: list(head.parameters()))())
    ids = {id(p) for p in decayed}
    rest = [p for p in head.parameters() if id(p) not in ids]
    groups = [{"params": decayed, "weight_decay": float(weight_decay)}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=float(lr))


def fit_contrastive(head, movies: Feats, books: Feats, train_links: np.ndarray, val_links: np.ndarray,
                    s: TrainSettings, extra: tuple[Feats, Feats] | None = None) -> tuple[list[dict], int]:
    """Train ``head`` in place (module doc); returns ``(history, best_epoch)``.

    ``train_links`` / ``val_links``: int arrays ``(k, 2)`` of (film row, book row) into ``movies`` /
    ``books``. ``extra``: label-free positive pairs (row i of one with row i of the other).
    """
    gen = torch.Generator().manual_seed(int(s.seed))
    rng = np.random.default_rng(int(s.seed))
    tau = float(s.temperature)
    pos = _group(train_links)
    val_pos = _group(val_links)
    hard = mine_hard_negatives(movies.text, books.text, pos, int(s.hard_negatives), int(s.hard_negative_skip))
    pool = validation_pool(len(books), val_pos, s.val_books, rng)
    opt = _optimizer(head, float(s.lr), float(s.weight_decay))
    bs = max(2, int(s.batch_size))
    history = [{"epoch": 0, "stage": "init", "train_loss": None,
                "val_mrr": validation_mrr(head, movies, books, val_pos, pool)}]
    best = (history[0]["val_mrr"], 0, copy.deepcopy(head.state_dict()))
    stale, n_pre, n_links = 0, int(s.pretrain_epochs) if extra else 0, int(s.epochs)
    for epoch in range(1, n_pre + n_links + 1):
        stage = "label_free" if epoch <= n_pre else "links"
        head.train()
        if epoch == n_pre + 1:
            stale = 0  # patience counts link epochs only
        losses = []
        n = len(extra[0]) if stage == "label_free" else len(train_links)
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            if len(idx) < 2:
                continue
            opt.zero_grad(set_to_none=True)
            if stage == "label_free":
                loss = _info_nce_pairs(head, extra[0].rows(idx), extra[1].rows(idx), tau)
            else:
                loss = _info_nce_links(head, movies, books, train_links[idx.numpy()], pos, hard, tau)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        head.eval()
        mrr = validation_mrr(head, movies, books, val_pos, pool)
        history.append({"epoch": epoch, "stage": stage, "train_loss": float(np.mean(losses)) if losses else None,
                        "val_mrr": mrr})
        if math.isnan(mrr) or mrr > best[0] + 1e-9 or math.isnan(best[0]):
            best, stale = (mrr, epoch, copy.deepcopy(head.state_dict())), 0
        else:
            stale += 1
            if stage == "links" and stale >= int(s.patience):
                break
    head.load_state_dict(best[2])
    head.eval()
    return history, best[1]


def _group(links: np.ndarray) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for m, b in np.asarray(links, dtype=np.int64).reshape(-1, 2):
        out.setdefault(int(m), set()).add(int(b))
    return out
