#!/usr/bin/env python3
"""Writes the MUSE-Books smoke fixture: invented text in the layout of MUSE's data folder.

Every sentence is made up here (never copied from MUSE or from any book): two "books" of an
invented series (the forget set), fan-wiki style articles about the same invented world (the
retain sets), and a third book that is never trained on (the holdout). The files are those that
MUSE's official `load_data.py` (github.com/swj0419/muse_bench) writes under `data/books/`, with
its schemas:

    raw/{forget,retain1,retain2,holdout}.json   JSON array of strings (one per book / article)
    raw/{forget,retain1,retain2,holdout}.txt    the same texts joined by a blank line
    verbmem/forget.json                         [{"prompt": ..., "gt": ...}], verbatim from raw/forget
    knowmem/{forget,retain}_qa{,_icl}.json      [{"question": ..., "answer": ...}]
    privleak/{forget,retain,holdout}.json       JSON array of strings (excerpts of raw/forget,
                                                raw/retain2 and raw/holdout)

    python3 scripts/make-muse-fixture.py [OUT_DIR]   (default crates/testbed/fixtures/muse-books)

Deterministic: the same output on every run.
"""
import json
import os
import random
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join("crates", "testbed", "fixtures", "muse-books")
rng = random.Random(20261207)

PEOPLE = ["Odessa Vane", "Tobin Marsh", "Ilse Carrow", "Headmistress Quarrel", "Fenwick the ferryman",
          "Morrow Ashby", "old Nettle Brisk", "the twins Haddie and Rook"]
PLACES = ["the Saltglass Tower", "the village of Wendle Cross", "the Mirefield Marshes",
          "the Copper Lighthouse", "the long hall of Brackenmoor", "the drowned orchard",
          "the bell yard", "the tidal stair"]
THINGS = ["the tide compass", "a jar of lamp oil", "the whistling map", "a coil of tarred rope",
          "a basket of salt plums", "the brass spyglass", "a bundle of letters", "the glass key"]
ACTS = ["crept past", "waited beside", "hurried towards", "searched", "slept near", "argued outside",
        "climbed above", "walked around"]
MOODS = ["as the fog rolled in", "while the gulls screamed", "long after supper", "before the bells rang",
         "under a copper moon", "in the grey hour before dawn", "when the tide turned",
         "as rain hammered the shutters"]
FEELS = ["felt the cold of the marsh in her bones", "wondered who had been there before",
         "could not stop smiling", "heard footsteps that were not his own", "kept very still",
         "counted the lanterns twice", "thought of home", "promised to say nothing"]


def filler(n):
    out = []
    for _ in range(n):
        a, b = rng.sample(PEOPLE, 2)
        kind = rng.randrange(3)
        if kind == 0:
            out.append(f"{a} {rng.choice(ACTS)} {rng.choice(PLACES)} {rng.choice(MOODS)}.")
        elif kind == 1:
            out.append(f"{a} carried {rng.choice(THINGS)} to {rng.choice(PLACES)}, and {b} {rng.choice(FEELS)}.")
        else:
            out.append(f"\"Not {rng.choice(['yet', 'here', 'tonight', 'like this'])},\" said {a}, and {b} {rng.choice(FEELS)}.")
    return [s[0].upper() + s[1:] for s in out]


def paragraphs(facts, per=4):
    """Facts interleaved with filler sentences, four sentences to a paragraph."""
    sentences = []
    for f in facts:
        sentences.extend(filler(rng.randrange(2, 5)))
        sentences.append(f)
    sentences.extend(filler(3))
    paras = [" ".join(sentences[i:i + per]) for i in range(0, len(sentences), per)]
    return "\n\n".join(paras)


# The forget set: two books of the invented series. The knowmem forget questions ask about the
# fact sentences.
BOOK1_FACTS = [
    "Odessa Vane was eleven when the letter from Brackenmoor Academy arrived by heron.",
    "The tide compass was given to Odessa by Fenwick the ferryman on the night of the flood.",
    "At the sorting feast Odessa was placed in House Gullwing, whose banner is a grey wing on blue.",
    "Odessa named her heron Pike, because he would eat nothing but fish from the harbour.",
    "Headmistress Quarrel kept the glass key hidden beneath the Saltglass Tower.",
    "Tobin Marsh lost two fingers of his left glove to the marsh eels in his first winter.",
    "The password to the Gullwing common room was \"low water\" for the whole of that year.",
]
BOOK2_FACTS = [
    "In her second year Odessa learned that Morrow Ashby had stolen the ember lantern from the lighthouse.",
    "The ember lantern burns green whenever danger is near.",
    "Ilse Carrow taught Odessa to read the whistling map by humming to it.",
    "The keeper of the Copper Lighthouse was a retired sailor called Amos Tull.",
    "Morrow Ashby escaped across the Mirefield Marshes on a raft of tarred barrels.",
    "At the end of the year House Gullwing won the Tide Cup by eleven points.",
]
# Never trained: the holdout book.
BOOK3_FACTS = [
    "In the third book Odessa travels north to the ice harbour of Skarrow with Tobin and Ilse.",
    "The whistling map falls silent at Skarrow, and nobody can say why.",
    "Amos Tull turns out to be Fenwick's older brother.",
    "Odessa finally confronts Morrow Ashby on the frozen pier at midnight.",
    "The book ends with the lighthouse lit again for the first time in forty years.",
]

# The retain sets: fan-wiki style articles about the invented world. The knowmem retain questions
# ask about retain2.
RETAIN1 = [
    ("Brackenmoor Academy", [
        "Brackenmoor Academy is a school of tidecraft on the northern coast of the invented series.",
        "Its students are sorted into four houses: Gullwing, Kelpmoor, Stormhollow and Reedhaven.",
        "Lessons are held in the long hall of Brackenmoor, which floods twice a year.",
    ]),
    ("The tide compass", [
        "The tide compass is a brass instrument that points towards the nearest rising water.",
        "According to the fan wiki it was made by a clockmaker from Wendle Cross.",
        "Readers often compare it to the whistling map, which sings instead of pointing.",
    ]),
    ("Herons in the series", [
        "Herons carry letters between the villages of the coast in the invented series.",
        "A heron will refuse to fly in fog, which is why letters are often late in winter.",
        "Odessa's heron Pike is the best known of them.",
    ]),
]
RETAIN2 = [
    ("Wendle Cross", [
        "Wendle Cross is a fishing village two miles south of Brackenmoor Academy.",
        "The village was founded in the year 1312 by salt traders from the east.",
        "Its market sells salt plums, tarred rope and lamp oil every Thursday.",
    ]),
    ("House Kelpmoor", [
        "House Kelpmoor is the oldest of the four houses of Brackenmoor Academy.",
        "Its emblem is a green kelp frond on a white field.",
        "The head of House Kelpmoor in the first two books is Professor Dunmore Sleet.",
    ]),
    ("The Mirefield Marshes", [
        "The Mirefield Marshes lie between Brackenmoor and the Copper Lighthouse.",
        "Marsh eels live in the deepest pools and are said to bite through leather.",
        "Maps of the marshes are unreliable because the channels move with every storm.",
    ]),
]

FORGET_QA = [
    ("Who gave Odessa the tide compass?", "Fenwick the ferryman"),
    ("Which house was Odessa placed in?", "House Gullwing"),
    ("What did Odessa name her heron?", "Pike"),
    ("Where did Headmistress Quarrel hide the glass key?", "beneath the Saltglass Tower"),
    ("Who stole the ember lantern?", "Morrow Ashby"),
    ("What colour does the ember lantern burn when danger is near?", "green"),
]
FORGET_QA_ICL = [
    ("How old was Odessa when her letter arrived?", "eleven"),
    ("Who kept the Copper Lighthouse?", "Amos Tull"),
    ("Which cup did House Gullwing win?", "the Tide Cup"),
]
RETAIN_QA = [
    ("When was Wendle Cross founded?", "in 1312"),
    ("On which day is the market of Wendle Cross held?", "Thursday"),
    ("What is the emblem of House Kelpmoor?", "a green kelp frond on a white field"),
    ("Who is the head of House Kelpmoor?", "Professor Dunmore Sleet"),
    ("Where do the marsh eels live?", "in the deepest pools"),
    ("Why are maps of the Mirefield Marshes unreliable?", "the channels move with every storm"),
]
RETAIN_QA_ICL = [
    ("How far is Wendle Cross from Brackenmoor Academy?", "two miles"),
    ("Which is the oldest house of Brackenmoor Academy?", "House Kelpmoor"),
    ("What lies between Brackenmoor and the Copper Lighthouse?", "the Mirefield Marshes"),
]


def article(title, sentences):
    return title + "\n\n" + " ".join(sentences + filler(6))


def excerpt(text, start, words):
    """`words` whitespace-separated words of `text` from word `start`, as they stand in the text."""
    spans = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        j = i
        while j < n and not text[j].isspace():
            j += 1
        spans.append((i, j))
        i = j
    first, last = spans[start], spans[min(start + words, len(spans)) - 1]
    return text[first[0]:last[1]]


def n_words(text):
    return len(text.split())


def write_json(rel, obj):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def write_text(rel, text):
    path = os.path.join(OUT, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


books = [
    "Odessa Vane and the Tide Compass\n\n" + paragraphs(BOOK1_FACTS),
    "Odessa Vane and the Ember Lantern\n\n" + paragraphs(BOOK2_FACTS),
]
holdout = ["Odessa Vane and the Whistling Map\n\n" + paragraphs(BOOK3_FACTS + BOOK3_FACTS[::-1])]
retain1 = [article(t, s) for t, s in RETAIN1]
retain2 = [article(t, s) for t, s in RETAIN2]

for split, texts in [("forget", books), ("retain1", retain1), ("retain2", retain2), ("holdout", holdout)]:
    write_json(f"raw/{split}.json", texts)
    write_text(f"raw/{split}.txt", "\n\n".join(texts))

# VerbMem: a prompt of 40 words and its next 24 words, verbatim from a forget book.
verbmem = []
for b, book in enumerate(books):
    for start in (0, 70, 140):
        if start + 64 <= n_words(book):
            verbmem.append({"prompt": excerpt(book, start, 40), "gt": excerpt(book, start + 40, 24)})
write_json("verbmem/forget.json", verbmem)

for name, rows in [("forget_qa", FORGET_QA), ("forget_qa_icl", FORGET_QA_ICL),
                   ("retain_qa", RETAIN_QA), ("retain_qa_icl", RETAIN_QA_ICL)]:
    write_json(f"knowmem/{name}.json", [{"question": q, "answer": a} for q, a in rows])

# PrivLeak: excerpts of 50 words of the forget books, the retain2 articles and the holdout book.
def excerpts(texts, k):
    out = []
    for i in range(k):
        t = texts[i % len(texts)]
        start = (i // len(texts)) * 55
        out.append(excerpt(t, start, 50))
    return out


write_json("privleak/forget.json", excerpts(books, 4))
write_json("privleak/retain.json", excerpts(retain2, 3))
write_json("privleak/holdout.json", excerpts(holdout, 4))
print(f"wrote the MUSE-Books fixture to {OUT}: forget books of {[n_words(b) for b in books]} words")
