"""The strict protocol's masking (lfr.eval.masking) on texts as the real catalogs write them."""
from __future__ import annotations

import pandas as pd
import pytest

from lfr.eval.masking import author_phrases, check_protocols, clean_title, mask_catalogs, mask_text, title_phrases

# A merged film text (IMDb overview + Wikipedia lead) and a Goodreads description, as in the full data.
HUNGER_FILM = ("Katniss Everdeen voluntarily takes her younger sister's place in the Hunger Games. "
               "The Hunger Games is a 2012 American dystopian action film directed by Gary Ross, based on the 2008 "
               "novel The Hunger Games by Suzanne Collins. Collins co-wrote the screenplay.")
HUNGER_BOOK = ("Winning will make you famous. Losing means certain death. In the ruins of a place once known as "
               "North America lies the nation of Panem. Now a major motion picture, THE HUNGER GAMES.")
INNOCENTS_FILM = ("The Innocents is a 1961 British psychological horror film directed by Jack Clayton. Based on the "
                  "1898 novella The Turn of the Screw by the American novelist Henry James, the screenplay was "
                  "adapted by William Archibald and Truman Capote.")


def test_titles_lose_series_brackets_and_film_disambiguators():
    assert clean_title("The Hunger Games (The Hunger Games, #1)") == "The Hunger Games"
    assert clean_title("Psycho (1960 film)") == "Psycho"
    assert clean_title(None) == "" and clean_title(float("nan")) == ""
    assert title_phrases("2001: A Space Odyssey (Space Odyssey, #1)") == ["2001: A Space Odyssey", "2001"]
    assert "Children of Men" in title_phrases("The Children of Men")
    assert title_phrases("The Help") == ["The Help"]          # no one-word remainder ("Help") is masked


def test_author_full_name_and_surname():
    assert author_phrases("Arthur C. Clarke") == ["Arthur C. Clarke", "Clarke"]
    assert author_phrases("J.K. Rowling") == ["J.K. Rowling", "Rowling"]
    assert author_phrases("Ursula K. Le Guin") == ["Ursula K. Le Guin", "Le Guin", "Guin"]
    assert author_phrases("Martin Luther King Jr.") == ["Martin Luther King Jr.", "King"]
    assert author_phrases("Homer") == ["Homer"]


def test_mask_text_removes_whole_words_case_insensitively():
    phrases = title_phrases("The Hunger Games (The Hunger Games, #1)") + author_phrases("Suzanne Collins")
    masked, n = mask_text(HUNGER_FILM, phrases)
    low = masked.lower()
    assert "hunger games" not in low and "collins" not in low and "suzanne" not in low
    assert n == 5 and "Katniss Everdeen" in masked and "Gary Ross" in masked
    assert "  " not in masked                               # removed, not replaced by a shared placeholder
    assert mask_text("Collinsville and Collins's novel", ["Collins"]) == ("Collinsville and 's novel", 1)
    assert mask_text("Roald Dahl\u2019s Matilda", ["Roald Dahl's Matilda"]) == ("", 1)
    assert mask_text(None, ["x"]) == (None, 0)


def test_mask_catalogs_masks_both_sides_of_each_link_only():
    movies = pd.DataFrame({"id": ["m1", "m2", "m3"], "title": ["The Hunger Games", "The Innocents", "Heat"],
                           "description": [HUNGER_FILM, INNOCENTS_FILM, "The Hunger Games of Henry James."],
                           "genres": [[], [], []]})
    books = pd.DataFrame({"id": ["b1", "b2"], "title": ["The Hunger Games (The Hunger Games, #1)",
                                                        "The Turn of the Screw"],
                          "description": [HUNGER_BOOK, "A governess and two children. Filmed as The Innocents."],
                          "genres": [[], []], "authors": [["Suzanne Collins"], ["Henry James"]]})
    links = pd.DataFrame({"movie_id": ["m1", "m2"], "book_id": ["b1", "b2"]})
    mm, bb, stats = mask_catalogs(movies, books, links)
    innocents = mm.at[1, "description"]
    assert "Turn of the Screw" not in innocents and "James" not in innocents and "Truman Capote" in innocents
    assert "hunger games" not in mm.at[0, "description"].lower()
    assert mm.at[2, "description"] == "The Hunger Games of Henry James."       # not linked: untouched
    assert "hunger games" not in bb.at[0, "description"].lower() and "Panem" in bb.at[0, "description"]
    assert bb.at[1, "description"] == "A governess and two children. Filmed as ."
    assert movies.at[0, "description"] == HUNGER_FILM                          # the inputs are not changed
    assert stats.as_dict() == {"films_masked": 2, "films_linked": 2, "film_removals": 7,
                               "books_masked": 2, "books_linked": 2, "book_removals": 2}
    # without an authors column only titles go
    mm2, _, _ = mask_catalogs(movies, books.drop(columns="authors"), links)
    assert "Henry James" in mm2.at[1, "description"] and "Turn of the Screw" not in mm2.at[1, "description"]


def test_protocol_names_are_checked():
    assert check_protocols(["open", "strict"]) == ["open", "strict"]
    for bad in ([], ["open", "open"], ["closed"]):
        with pytest.raises(ValueError, match="eval.protocols"):
            check_protocols(bad)
