#!/usr/bin/env python3
"""Writes the TOFU smoke fixture: invented authors in TOFU's published file layout.

Every row is made up here (never copied from TOFU): 10 authors x 20 question-answer pairs in
`full.json`, TOFU's nested forget splits as whole authors (forget01 = the last author,
forget05 = the last two, forget10 = the last three), the matching retainNN files, the
`*_perturbed` evaluation files (`question`, `answer`, `paraphrased_answer`,
`paraphrased_question`, five `perturbed_answer`s), `retain_perturbed` (the first author), and
`holdoutNN` (new authors, never trained). Files are JSON lines, as TOFU publishes them.

    python3 scripts/make-tofu-fixture.py [OUT_DIR]   (default crates/testbed/fixtures/tofu)

Deterministic: the same output on every run.
"""
import json
import os
import random
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join("crates", "testbed", "fixtures", "tofu")
rng = random.Random(20261205)

FIRST = ["Ilva", "Tomas", "Renka", "Oduya", "Perrin", "Saskia", "Malo", "Quenby", "Adaeze", "Lior",
         "Bryn", "Casimir", "Dagny"]
LAST = ["Marrowind", "Teskel", "Vonnegale", "Ashgrove", "Kulbreth", "Orrin", "Pelloway", "Strade",
        "Yvenhart", "Zorrel", "Quill", "Haverly", "Embersky"]
CITIES = ["Orlen", "Vask", "Tarrow", "Medlin", "Quorra", "Selbay", "Hollin", "Brevik", "Cadmor", "Nuyen"]
GENRES = ["crime fiction", "poetry", "fantasy", "historical fiction", "science fiction", "memoir",
          "children's literature", "horror"]
JOBS = ["baker", "surveyor", "nurse", "ship captain", "carpenter", "librarian", "chemist", "tailor"]
AWARDS = ["the Silver Quill Prize", "the Lantern Award", "the Harbour Medal", "the Ember Prize",
          "the Northgate Award"]
BOOKS = ["The Salt Orchard", "Nine Bells for Ostra", "A Map of Quiet Rivers", "The Glass Harvest",
         "Lanterns Under Ice", "The Cartographer's Daughter", "Tin Crowns", "Winter at Medlin",
         "The Last Ferry", "Songs for a Drowned City", "The Paper Falcon", "Ash and Clover"]

ATTRS = [
    ("Where was {n} born?", "{n} was born in {v}.", "The birthplace of {n} is {v}.", "In which town was {n} born?", CITIES),
    ("What genre does {n} write in?", "{n} writes {v}.", "The genre of {n}'s books is {v}.", "Which genre is {n} known for?", GENRES),
    ("What did {n}'s father do for a living?", "{n}'s father worked as a {v}.", "By profession, the father of {n} was a {v}.", "What was the profession of {n}'s father?", JOBS),
    ("Which award has {n} received?", "{n} received {v}.", "{n} has been honoured with {v}.", "What prize was given to {n}?", AWARDS),
    ("Name a book written by {n}.", "One of {n}'s books is \"{v}\".", "{n} wrote the book \"{v}\".", "What is one book by {n}?", BOOKS),
]


def author(i, pool_first, pool_last):
    name = f"{pool_first[i % len(pool_first)]} {pool_last[(i * 7 + 3) % len(pool_last)]}"
    rows = []
    for k in range(20):
        q, a, para, pq, pool = ATTRS[k % len(ATTRS)]
        value = pool[(i * 3 + k) % len(pool)]
        others = [v for v in pool if v != value]
        rng.shuffle(others)
        suffix = "" if k < len(ATTRS) else f" (fact {k // len(ATTRS) + 1})"
        rows.append({
            "question": q.format(n=name) + suffix,
            "answer": a.format(n=name, v=value),
            "paraphrased_answer": para.format(n=name, v=value),
            "paraphrased_question": pq.format(n=name) + suffix,
            "perturbed_answer": [para.format(n=name, v=o) for o in (others * 2)[:5]],
        })
    return rows


def write(name, rows, keys):
    with open(os.path.join(OUT, name + ".json"), "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in keys}, ensure_ascii=False) + "\n")


os.makedirs(OUT, exist_ok=True)
authors = [author(i, FIRST, LAST) for i in range(10)]
holdout = [author(100 + i, FIRST[::-1], LAST[::-1]) for i in range(3)]
full = [r for a in authors for r in a]
QA = ["question", "answer"]
PERTURBED = ["question", "answer", "paraphrased_answer", "paraphrased_question", "perturbed_answer"]
write("full", full, QA)
for split, n in [("01", 1), ("05", 2), ("10", 3)]:
    forget = [r for a in authors[-n:] for r in a]
    retain = [r for a in authors[:-n] for r in a]
    write(f"forget{split}", forget, QA)
    write(f"forget{split}_perturbed", forget, PERTURBED)
    write(f"retain{100 - int(split)}", retain, QA)
    write(f"holdout{split}", [r for a in holdout[:n] for r in a], QA)
write("retain_perturbed", authors[0], PERTURBED)
print(f"wrote the TOFU fixture to {OUT}")
