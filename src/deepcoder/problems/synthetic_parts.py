"""The parts that synthetic problems are composed of: containers, modifiers and operations.

A problem is ``operation(modifier(container))``: a container gives a list of items (ints, words or
characters), a modifier keeps some of them (a filter) or transforms each (a map), and an operation
reduces or reorders the result. Every part carries its code (one line of the reference solution),
its meaning as a Python function (from which the tests' expected values are computed, so the code
is checked against an independent statement of what it should do) and several phrasings.
Phrases use ``{noun}`` (the container's items), ``{src}`` (the container) and ``{k}``, ``{c}``,
``{sep}`` (the problem's constants).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INT, WORD, CHAR = "int", "word", "char"
ANNOTATIONS = {INT: "int", WORD: "str", CHAR: "str"}
WORDS = (
    "apple",
    "echo",
    "idea",
    "oak",
    "umbrella",
    "ice",
    "sky",
    "tree",
    "moon",
    "river",
    "stone",
    "level",
    "noon",
    "radar",
    "cat",
    "dog",
    "sun",
    "pear",
    "kiwi",
    "lemon",
    "mango",
    "eagle",
    "owl",
    "ant",
    "bee",
    "yak",
    "zebra",
    "tent",
    "book",
    "door",
    "pen",
    "cup",
    "map",
    "star",
    "wave",
    "rain",
    "snow",
    "leaf",
)
LETTERS = "aeiostnrdlmc"


@dataclass(frozen=True)
class Container:
    """Where the items come from: the parameter, its type, and the code that lists its items."""

    name: str
    element: str
    annotation: str
    access: str
    noun: str
    sources: tuple[str, ...]
    make: Callable[[random.Random], Any]
    items: Callable[[Any], list]


@dataclass(frozen=True)
class Modifier:
    """A filter (``keep``) or a map (``map``) over items; ``code`` is a Python expression in ``x``."""

    id: str
    word: str
    element: str
    kind: str
    result: str
    code: str
    phrases: tuple[str, ...]
    fn: Callable[..., Any]
    const: str | None = None


@dataclass(frozen=True)
class Operation:
    """What is done with the modified items: ``code`` is the returned expression over ``values``."""

    id: str
    code: str
    phrases: tuple[str, ...]
    fn: Callable[..., Any]
    accepts: tuple[str, ...]
    returns: str
    filters_only: bool = False
    const: str | None = None


def _ints(rng: random.Random) -> list[int]:
    return [rng.randint(-9, 9) for _ in range(rng.randint(3, 5))]


def _word(rng: random.Random) -> str:
    word = rng.choice(WORDS)
    return word.upper() if rng.random() < 0.25 else word


def _chars(rng: random.Random) -> str:
    pool = "abcdeiouxyzAEBTK0123 "
    return "".join(rng.choice(pool) for _ in range(rng.randint(4, 7)))


CONTAINERS = (
    Container("nums", INT, "list[int]", "nums", "numbers", ("nums", "the list nums"), _ints, list),
    Container(
        "scores",
        INT,
        "dict[str, int]",
        "list(scores.values())",
        "values",
        ("the dict scores", "the mapping scores"),
        lambda rng: {name: value for name, value in zip("abcdefgh", _ints(rng))},
        lambda value: list(value.values()),
    ),
    Container(
        "words",
        WORD,
        "list[str]",
        "words",
        "words",
        ("words", "the list words"),
        lambda rng: [_word(rng) for _ in range(rng.randint(3, 4))],
        list,
    ),
    Container(
        "sentence",
        WORD,
        "str",
        "sentence.split()",
        "words",
        ("sentence", "the string sentence"),
        lambda rng: " ".join(_word(rng) for _ in range(rng.randint(3, 4))),
        str.split,
    ),
    Container("text", CHAR, "str", "text", "characters", ("text", "the string text"), _chars, list),
)


def _keep(id_: str, element: str, code: str, phrases: tuple[str, ...], fn, const=None, word=None) -> Modifier:
    return Modifier(id_, word or id_.split(".")[1], element, "keep", element, code, phrases, fn, const)


def _map(id_: str, element: str, result: str, code: str, phrases, fn, const=None, word=None) -> Modifier:
    return Modifier(id_, word or id_.split(".")[1], element, "map", result, code, phrases, fn, const)


MODIFIERS = (
    _keep(
        "int.even",
        INT,
        "x % 2 == 0",
        ("the even {noun} in {src}", "the {noun} in {src} that are even"),
        lambda x: x % 2 == 0,
    ),
    _keep(
        "int.odd",
        INT,
        "x % 2 == 1",
        ("the odd {noun} in {src}", "the {noun} in {src} that are odd"),
        lambda x: x % 2 == 1,
    ),
    _keep(
        "int.positive",
        INT,
        "x > 0",
        ("the positive {noun} in {src}", "the {noun} in {src} above zero"),
        lambda x: x > 0,
    ),
    _keep(
        "int.negative",
        INT,
        "x < 0",
        ("the negative {noun} in {src}", "the {noun} in {src} below zero"),
        lambda x: x < 0,
    ),
    _keep(
        "int.greater",
        INT,
        "x > {k}",
        ("the {noun} in {src} greater than {k}", "the {noun} in {src} that exceed {k}"),
        lambda x, k: x > k,
        "k",
    ),
    _keep(
        "int.less",
        INT,
        "x < {k}",
        ("the {noun} in {src} less than {k}", "the {noun} in {src} smaller than {k}"),
        lambda x, k: x < k,
        "k",
    ),
    _keep(
        "int.multiple",
        INT,
        "x % {k} == 0",
        ("the {noun} in {src} divisible by {k}", "the {noun} in {src} that are multiples of {k}"),
        lambda x, k: x % k == 0,
        "d",
    ),
    _map(
        "int.double",
        INT,
        INT,
        "x * 2",
        ("the {noun} in {src}, each doubled", "twice each of the {noun} in {src}"),
        lambda x: x * 2,
    ),
    _map(
        "int.square",
        INT,
        INT,
        "x * x",
        ("the squares of the {noun} in {src}", "the {noun} in {src}, each squared"),
        lambda x: x * x,
    ),
    _map(
        "int.plus",
        INT,
        INT,
        "x + {k}",
        ("the {noun} in {src}, each plus {k}", "the {noun} in {src} increased by {k}"),
        lambda x, k: x + k,
        "k",
    ),
    _map(
        "int.times",
        INT,
        INT,
        "x * {k}",
        ("the {noun} in {src}, each times {k}", "the {noun} in {src} multiplied by {k}"),
        lambda x, k: x * k,
        "d",
    ),
    _map(
        "int.absolute",
        INT,
        INT,
        "abs(x)",
        ("the absolute values of the {noun} in {src}", "the {noun} in {src} without their signs"),
        abs,
    ),
    _map(
        "int.negate",
        INT,
        INT,
        "-x",
        ("the negatives of the {noun} in {src}", "the {noun} in {src} with signs flipped"),
        lambda x: -x,
    ),
    _keep(
        "word.long",
        WORD,
        "len(x) > {k}",
        ("the {noun} in {src} longer than {k} letters", "the {noun} in {src} with more than {k} letters"),
        lambda x, k: len(x) > k,
        "n",
    ),
    _keep(
        "word.short",
        WORD,
        "len(x) < {k}",
        ("the {noun} in {src} shorter than {k} letters", "the {noun} in {src} with fewer than {k} letters"),
        lambda x, k: len(x) < k,
        "m",
    ),
    _keep(
        "word.vowel",
        WORD,
        'x[:1].lower() in "aeiou"',
        ("the {noun} in {src} that start with a vowel", "the {noun} in {src} beginning with a vowel"),
        lambda x: x[:1].lower() in "aeiou",
    ),
    _keep(
        "word.capital",
        WORD,
        "x.isupper()",
        ("the upper-case {noun} in {src}", "the {noun} in {src} written in capitals"),
        str.isupper,
    ),
    _keep(
        "word.starting",
        WORD,
        'x.startswith("{c}")',
        ("the {noun} in {src} that start with '{c}'", "the {noun} in {src} beginning with the letter '{c}'"),
        lambda x, c: x.startswith(c),
        "c",
    ),
    _keep(
        "word.ending",
        WORD,
        'x.endswith("{c}")',
        ("the {noun} in {src} that end with '{c}'", "the {noun} in {src} ending in the letter '{c}'"),
        lambda x, c: x.endswith(c),
        "c",
    ),
    _keep(
        "word.containing",
        WORD,
        '"{c}" in x',
        ("the {noun} in {src} that contain '{c}'", "the {noun} in {src} containing the letter '{c}'"),
        lambda x, c: c in x,
        "c",
    ),
    _keep(
        "word.palindrome",
        WORD,
        "x == x[::-1]",
        ("the palindromes in {src}", "the {noun} in {src} that read the same backwards"),
        lambda x: x == x[::-1],
    ),
    _map(
        "word.upper",
        WORD,
        WORD,
        "x.upper()",
        ("the {noun} in {src} in upper case", "the {noun} in {src}, upper-cased"),
        str.upper,
    ),
    _map(
        "word.lower",
        WORD,
        WORD,
        "x.lower()",
        ("the {noun} in {src} in lower case", "the {noun} in {src}, lower-cased"),
        str.lower,
    ),
    _map(
        "word.reverse",
        WORD,
        WORD,
        "x[::-1]",
        ("the {noun} in {src}, each reversed", "the {noun} in {src} spelled backwards"),
        lambda x: x[::-1],
    ),
    _map(
        "word.length",
        WORD,
        INT,
        "len(x)",
        ("the lengths of the {noun} in {src}", "the letter counts of the {noun} in {src}"),
        len,
    ),
    _map(
        "word.initial",
        WORD,
        CHAR,
        "x[:1]",
        ("the first letters of the {noun} in {src}", "the initials of the {noun} in {src}"),
        lambda x: x[:1],
    ),
    _map(
        "word.title",
        WORD,
        WORD,
        "x.capitalize()",
        ("the {noun} in {src}, capitalized", "the {noun} in {src} with a capital first letter"),
        str.capitalize,
    ),
    _keep(
        "char.vowel",
        CHAR,
        'x.lower() in "aeiou"',
        ("the vowels in {src}", "the {noun} of {src} that are vowels"),
        lambda x: x.lower() in "aeiou",
    ),
    _keep(
        "char.digit", CHAR, "x.isdigit()", ("the digits in {src}", "the {noun} of {src} that are digits"), str.isdigit
    ),
    _keep(
        "char.letter",
        CHAR,
        "x.isalpha()",
        ("the letters in {src}", "the {noun} of {src} that are letters"),
        str.isalpha,
    ),
    _keep(
        "char.capital",
        CHAR,
        "x.isupper()",
        ("the upper-case letters in {src}", "the capital letters of {src}"),
        str.isupper,
    ),
    _keep(
        "char.nonspace",
        CHAR,
        'x != " "',
        ("the {noun} of {src} other than spaces", "the non-space {noun} of {src}"),
        lambda x: x != " ",
    ),
    _map(
        "char.upper",
        CHAR,
        CHAR,
        "x.upper()",
        ("the {noun} of {src} in upper case", "the {noun} of {src}, upper-cased"),
        str.upper,
    ),
    _map(
        "char.swap",
        CHAR,
        CHAR,
        "x.swapcase()",
        ("the {noun} of {src} with their case swapped", "the {noun} of {src}, case inverted"),
        str.swapcase,
    ),
    _map(
        "char.code",
        CHAR,
        INT,
        "ord(x)",
        ("the character codes of the {noun} of {src}", "the ord values of the {noun} of {src}"),
        ord,
    ),
)

ALL, STRS = (INT, WORD, CHAR), (WORD, CHAR)
OPERATIONS = (
    Operation(
        "count",
        "len(values)",
        ("Count {things}.", "Return the number of {things}.", "Return how many there are of {things}."),
        len,
        ALL,
        "int",
        filters_only=True,
    ),
    Operation(
        "sum",
        "sum(values)",
        ("Return the sum of {things}.", "Add up {things} and return the total."),
        sum,
        (INT,),
        "int",
    ),
    Operation(
        "max",
        "max(values, default=0)",
        (
            "Return the largest of {things}, or 0 if there are none.",
            "Return the maximum of {things} (0 when there are none).",
        ),
        lambda v: max(v, default=0),
        (INT,),
        "int",
    ),
    Operation(
        "min",
        "min(values, default=0)",
        (
            "Return the smallest of {things}, or 0 if there are none.",
            "Return the minimum of {things} (0 when there are none).",
        ),
        lambda v: min(v, default=0),
        (INT,),
        "int",
    ),
    Operation(
        "list",
        "values",
        ("Return a list of {things}, in their original order.", "Return a list with {things}, keeping their order."),
        list,
        ALL,
        "list[{t}]",
    ),
    Operation(
        "sorted",
        "sorted(values)",
        ("Return {things}, sorted in ascending order.", "Return a sorted list of {things}, smallest first."),
        sorted,
        ALL,
        "list[{t}]",
    ),
    Operation(
        "reversed",
        "values[::-1]",
        ("Return {things} in reverse order.", "Return a list of {things}, last one first."),
        lambda v: v[::-1],
        ALL,
        "list[{t}]",
    ),
    Operation(
        "first",
        "values[0] if values else None",
        (
            "Return the first of {things}, or None if there are none.",
            "Return the first one of {things} (None when there is none).",
        ),
        lambda v: v[0] if v else None,
        ALL,
        "{t} | None",
    ),
    Operation(
        "last",
        "values[-1] if values else None",
        (
            "Return the last of {things}, or None if there are none.",
            "Return the last one of {things} (None when there is none).",
        ),
        lambda v: v[-1] if v else None,
        ALL,
        "{t} | None",
    ),
    Operation(
        "distinct",
        "len(set(values))",
        ("Return how many distinct values there are among {things}.", "Count the different values among {things}."),
        lambda v: len(set(v)),
        ALL,
        "int",
    ),
    Operation(
        "join",
        '"{sep}".join(values)',
        (
            "Return {things} joined with '{sep}' between them.",
            "Join {things} with the separator '{sep}' and return the string.",
        ),
        lambda v, sep: sep.join(v),
        STRS,
        "str",
        const="sep",
    ),
)

CONSTANTS = {
    "k": lambda rng: rng.randint(0, 6),
    "d": lambda rng: rng.randint(2, 5),
    "n": lambda rng: rng.randint(2, 5),
    "m": lambda rng: rng.randint(4, 6),
    "c": lambda rng: rng.choice(LETTERS),
    "sep": lambda rng: rng.choice(("-", ",", "+", "/", ":")),
}


def applies(operation: Operation, modifier: Modifier) -> bool:
    """Whether ``operation`` makes sense on what ``modifier`` yields."""
    return modifier.result in operation.accepts and (modifier.kind == "keep" or not operation.filters_only)
