"""Deterministic synthetic corpus for the dsedge reference checkpoints.

The text describes a small invented world (people, towns, rivers) whose facts
are fixed, so a tiny model can memorise them, mixed with random choices
(days, weather, shopping, gifts, which person a sentence is about) that give the
text irreducible entropy, plus single-digit addition written in words
("seven plus five equals twelve .") with exact answers.  Numbers are words so
every token is a lowercase word or one of ". ?": the text tokenizes to the
same one-token-per-word ids under both the word-level tokenizer and the
byte-level BPE tokenizer (see train.py).  Everything comes from
`random.Random` seeded with strings, so the output is identical on every
platform and Python version (>= 3.2).

    generate(split, n_lines, seed) -> list[str]   # split in {"train", "eval", "calib"}
    task_examples(n, seed)         -> list[{"prompt": "seven plus five equals", "answer": "twelve"}]
    vocabulary()                   -> list[str]   # every word the generator can emit
    write_data(dir)                               # eval.txt, calib.txt, task.jsonl

Run `python -m dsedge.reference.corpus [DIR]` to (re)write the shipped data files.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

SPLITS = ("train", "eval", "calib")
WORLD_SEED = "dsedge-world-v1"  # fixes the world's facts; independent of split seeds
CHANT = ["ba", "de", "fi", "go", "ku", "la", "me", "ni", "po", "ru", "sa", "te", "vi", "zo", "ga", "mu"]
CHANT_ALPHA = 0.3  # Dirichlet concentration of the chant's next-syllable distributions
MAX_OPERAND = 9                 # addition operands in 0..9 -> 100 facts, answers 0..18
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]

# ---- word lists (plain English words chosen for this project) ---------------
_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]
PROFESSIONS = ["baker", "smith", "farmer", "miller", "weaver", "sailor",
               "potter", "hunter", "healer", "scribe", "mason", "tailor"]
COLORS = ["red", "blue", "green", "yellow", "white", "black", "grey", "brown"]
PETS = ["cat", "dog", "goat", "owl", "fox", "horse", "hen", "crow"]
REGIONS = ["north", "south", "east", "west"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEATHER = ["sunny", "rainy", "windy", "cold", "warm", "foggy", "cloudy", "stormy"]
ITEMS = ["apples", "pears", "eggs", "loaves", "candles", "ropes", "jars", "fish", "nails", "cloths"]
FEELINGS = ["happy", "tired", "hungry", "calm", "busy", "glad"]
TIMES = ["morning", "noon", "evening", "night"]
ADJECTIVES = ["fresh", "old", "small", "big", "cheap", "fine", "new", "dry"]
FUNCTION_WORDS = ["the", "a", "is", "in", "lives", "lies", "by", "river", "from",
                  "friend", "of", "has", "went", "to", "on", "and", "bought", "weather", "was",
                  "met", "where", "does", "live", "who", "it", "felt", "what", "pet", "have",
                  "with", "walked", "near", "plus", "equals", "gave", "saw", "cost", "coins",
                  "road", "miles", "long", "chant", "goes", "?", "."]


def _name(rng: random.Random, n_syllables: int) -> str:
    """An invented name like 'kalo' or 'dunemi' (consonant-vowel syllables)."""
    return "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(n_syllables))


def _build_world(n_people: int = 64, n_towns: int = 16, n_rivers: int = 8) -> dict:
    """The fixed world: people, towns and rivers with consistent relations."""
    rng = random.Random(WORLD_SEED)
    reserved = set(FUNCTION_WORDS + PROFESSIONS + COLORS + PETS + REGIONS + DAYS + WEATHER
                   + ITEMS + FEELINGS + TIMES + ADJECTIVES + NUMBERS + CHANT)
    names: list[str] = []
    while len(names) < n_people + n_towns + n_rivers:  # all distinct new words
        w = _name(rng, rng.choice([2, 3]))
        if w not in names and w not in reserved:
            names.append(w)
    people, towns, rivers = names[:n_people], names[n_people:-n_rivers], names[-n_rivers:]
    town_info = {t: {"region": rng.choice(REGIONS), "river": rng.choice(rivers)} for t in towns}
    person_info = {}
    for p in people:
        person_info[p] = {
            "town": rng.choice(towns),
            "job": rng.choice(PROFESSIONS),
            "color": rng.choice(COLORS),
            "pet": rng.choice(PETS),
            "friend": rng.choice([q for q in people if q != p]),
        }
    # Two-key lookup tables: the answer depends on a pair of words, so it cannot
    # live in one word's embedding and has to be stored in the MLP weights.
    prices = {(t, it): rng.randint(2, 12) for t in towns for it in ITEMS}
    roads = {}
    for i, a in enumerate(towns):
        for b in towns[i + 1:]:
            roads[a, b] = roads[b, a] = rng.randint(2, 18)
    # The villagers' chant: a second-order Markov chain over short syllables whose
    # next-syllable probabilities are graded (Dirichlet), so a model must store
    # calibrated distributions for each pair of previous syllables.
    chant = {}
    for a in CHANT:
        for b in CHANT:
            g = [rng.gammavariate(CHANT_ALPHA, 1.0) for _ in CHANT]
            chant[a, b] = [x / sum(g) for x in g]
    return {"people": people, "towns": towns, "rivers": rivers, "town": town_info,
            "person": person_info, "price": prices, "road": roads, "chant": chant}


WORLD = _build_world()


def vocabulary() -> list[str]:
    """Every word the generator can emit, sorted (specials are added by the tokenizer)."""
    words = set(FUNCTION_WORDS + PROFESSIONS + COLORS + PETS + REGIONS + DAYS + WEATHER
                + ITEMS + FEELINGS + TIMES + ADJECTIVES + NUMBERS + CHANT + WORLD["people"] + WORLD["towns"] + WORLD["rivers"])
    return sorted(words)


def _fact(rng: random.Random) -> str:
    """A fixed fact about the world (only the subject and template are random)."""
    W = WORLD
    p = rng.choice(W["people"])
    info = W["person"][p]
    r = rng.randrange(8)
    if r == 0:
        return f"{p} lives in {info['town']} ."
    if r == 1:
        return f"{p} is a {info['job']} from {info['town']} ."
    if r == 2:
        return f"the friend of {p} is {info['friend']} ."
    if r == 3:
        return f"{p} has a {info['color']} {info['pet']} ."
    if r == 4:
        t = rng.choice(W["towns"])
        return f"{t} lies in the {W['town'][t]['region']} by the river {W['town'][t]['river']} ."
    if r == 5:
        return f"where does {p} live ? {p} lives in {info['town']} ."
    if r == 6:
        return f"who is the friend of {p} ? it is {info['friend']} ."
    return f"what pet does {p} have ? {p} has a {info['color']} {info['pet']} ."


def _event(rng: random.Random) -> str:
    """A random event: free choices (irreducible entropy) mixed with fixed facts."""
    W = WORLD
    p = rng.choice(W["people"])
    info = W["person"][p]
    r = rng.randrange(6)
    if r == 0:
        return (f"on {rng.choice(DAYS)} {rng.choice(TIMES)} the weather in "
                f"{rng.choice(W['towns'])} was {rng.choice(WEATHER)} .")
    if r == 1:
        return (f"{p} went to {rng.choice(W['towns'])} on {rng.choice(DAYS)} and bought "
                f"{NUMBERS[rng.randint(2, 9)]} {rng.choice(ADJECTIVES)} {rng.choice(ITEMS)} .")
    if r == 2:
        return (f"{p} gave {NUMBERS[rng.randint(2, 9)]} {rng.choice(ITEMS)} to "
                f"{rng.choice(W['people'])} .")
    if r == 3:  # friend and home town are facts; the day and time are free
        return (f"{p} and {info['friend']} met in {info['town']} on {rng.choice(DAYS)} "
                f"{rng.choice(TIMES)} .")
    if r == 4:  # pet and river are facts; the mood is free
        return (f"{p} walked with the {info['pet']} near the river "
                f"{W['town'][info['town']]['river']} and felt {rng.choice(FEELINGS)} .")
    return f"{p} saw a {rng.choice(COLORS)} {rng.choice(PETS)} in {rng.choice(W['towns'])} ."


def _table(rng: random.Random) -> str:
    """A value from a two-key table: market prices (town, item) or road lengths (town, town)."""
    W = WORLD
    if rng.random() < 0.5:
        t, it = rng.choice(W["towns"]), rng.choice(ITEMS)
        return f"in {t} {it} cost {NUMBERS[W['price'][t, it]]} coins ."
    a, b = rng.sample(W["towns"], 2)
    return f"the road from {a} to {b} is {NUMBERS[W['road'][a, b]]} miles long ."


def _chant(rng: random.Random) -> str:
    """A line of the chant: two free syllables, then each one drawn given the previous two."""
    s = [rng.choice(CHANT), rng.choice(CHANT)]
    for _ in range(rng.randint(6, 10)):
        s.append(rng.choices(CHANT, weights=WORLD["chant"][s[-2], s[-1]])[0])
    return "the chant goes " + " ".join(s) + " ."


MIX = (0.25, 0.30, 0.15, 0.15)  # fraction of facts, events, tables, chants; the rest is addition


def _sentence(rng: random.Random) -> str:
    """One line: a world fact, a random event, a table value, or an addition."""
    kind = rng.random()
    if kind < MIX[0]:
        return _fact(rng)
    if kind < MIX[0] + MIX[1]:
        return _event(rng)
    if kind < sum(MIX[:3]):
        return _table(rng)
    if kind < sum(MIX):
        return _chant(rng)
    a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
    return f"{NUMBERS[a]} plus {NUMBERS[b]} equals {NUMBERS[a + b]} ."


def generate(split: str, n_lines: int, seed: int = 0) -> list[str]:
    """`n_lines` lines of text for `split`; each (split, seed) pair has its own RNG stream."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = random.Random(f"dsedge-corpus-{split}-{seed}")  # str seeds are hashed with sha512
    return [_sentence(rng) for _ in range(n_lines)]


def task_examples(n: int, seed: int = 0) -> list[dict]:
    """`n` addition prompts with exact answers, e.g.
    {"prompt": "seven plus five equals", "answer": "twelve"} (the answer is one token).

    Operands are in 0..MAX_OPERAND, so all 100 facts also occur in the training
    text: the task measures recall of memorised facts, not generalisation.
    """
    rng = random.Random(f"dsedge-task-{seed}")
    out = []
    for _ in range(n):
        a, b = rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)
        out.append({"prompt": f"{NUMBERS[a]} plus {NUMBERS[b]} equals", "answer": NUMBERS[a + b]})
    return out


# Sizes of the shipped files (kept small: ~60 KB eval, ~40 KB calib, 200 task examples).
DATA_SPEC = {"eval": 1700, "calib": 1000, "task": 200, "seed": 0}


def data_files() -> dict[str, str]:
    """Contents of the shipped data files, by file name."""
    s = DATA_SPEC["seed"]
    task = task_examples(DATA_SPEC["task"], s)
    return {
        "eval.txt": "\n".join(generate("eval", DATA_SPEC["eval"], s)) + "\n",
        "calib.txt": "\n".join(generate("calib", DATA_SPEC["calib"], s)) + "\n",
        "task.jsonl": "".join(json.dumps(ex) + "\n" for ex in task),
    }


def write_data(dir: str | Path) -> None:
    """Write eval.txt, calib.txt and task.jsonl into `dir`."""
    d = Path(dir)
    d.mkdir(parents=True, exist_ok=True)
    for name, text in data_files().items():
        (d / name).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write_data(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "data")
