"""Answers that rest on the document: evidence sentences -> candidate answer -> verify -> cite or abstain.

Every memory kind (and a document read whole) answers through `grounded_answer`:

1. the question's expected answer type (`answer_type`: who -> person, where -> place, when -> date,
   how many -> number, how much -> amount, what colour -> colour, ...);
2. the evidence sentences that bear on the question (`relevant`; bibliography entries are no
   evidence): those naming what the question names, and those linked to them by a shared name or
   noun (the second sentence of a chain); a question whose names occur in none of them is about
   something the document never names;
3. the model's free answer is kept only when one of those sentences supports it (`supports`): its
   names and numbers occur there (numbers by value: "thirty-one" = 31), its other words are found in
   the evidence, and it holds an answer of the expected type taken from that sentence;
4. otherwise the answer is chosen from the evidence: candidate spans of the expected type
   (`candidates`) scored by the model as log P(span | evidence, question) (batched), the best kept when
   it beats saying "The document does not say." by `MIN_MARGIN`; when the free answer is supported and
   the evidence holds several candidates, the best-scored of those it names is the answer;
5. nothing of the expected type in the evidence, or no supported answer: abstain (`NOT_IN_DOCUMENT`).

The word lists here are general English (number words, currency units, colour terms, months, kinship
and role nouns), not any benchmark's vocabulary.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from ..io.spans import Span, plain, reference_entry
from ..model.engine import Engine
from ..model.generation import pad_id
from .abstention import NOT_IN_DOCUMENT, is_abstention

# -- thresholds (calibrated on the dev split of benchmarks/naturalqa_items.json: docs/answering.md) --
MIN_MARGIN = -0.75  # a chosen span's log P over the abstention phrase's (mean per token; dev: docs/answering.md)
MIN_COVERAGE = 0.75  # share of a free answer's new content words found in the evidence
MAX_FOCUS = 6  # evidence sentences candidates are drawn from (the most relevant first)
MAX_CANDIDATES = 32  # spans scored per question
# added to a span's log P per share of the question's content words its sentence holds ("Who was the first
# keeper?": "The first keeper, Thomas Reed" over "The last keeper, John Pike"); no effect on the dev split
# (one sentence per fact there), set on the README's example document
COVERAGE_WEIGHT = 2.0

PERSON, NAME, GROUP, PLACE, DATE, NUMBER, AGE, AMOUNT, COLOUR, ROLE, KINSHIP, OTHER = (
    "person", "name", "group", "place", "date", "number", "age", "amount", "colour", "role", "kinship", "other")

# -- words -------------------------------------------------------------------------------------------
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[$£€¥]?\d[\d,]*(?:\.\d+)?(?:st|nd|rd|th)?|[^\W\d_{_CJK}]+(?:['’-][^\W\d_{_CJK}]+)*")
STOP = frozenset("""a an the and or but if then than so as of in on at to for from by with without into onto over
under about above below between through during before after since until while within upon against among is are
was were be been being am has have had do does did will would shall should can could may might must not no nor
it its this that these those there here he she they them his her their we our us you your i me my mine which
who whom whose what when where why how all any each every both either neither some such more most other another
same also very just only too again further once yet still even much many few one ones""".split())
DETERMINERS = frozenset("the a an his her their its my our your this that these those".split())
LOCATIVE = frozenset("in at to into from near on onto by beside behind under over across toward towards inside "
                     "outside through past beyond".split())
UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                    "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
COUNT_WORDS = {"dozen": 12, "score": 20}  # after a number word or "a": "a dozen", "three score"
TIMES = {"once": 1, "twice": 2, "thrice": 3}  # how many times
ORDINALS = {w: i + 1 for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth fourteenth "
    "fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split())}
ORDINALS.update({"thirtieth": 30, "thirty-first": 31, **{f"twenty-{w}": 20 + v for w, v in list(ORDINALS.items())[:9]}})
CURRENCY = frozenset("""dollar dollars cent cents penny pennies pence farthing farthings halfpenny halfpence shilling
shillings pound pounds guinea guineas sovereign sovereigns crown crowns florin florins groat groats franc francs mark
marks euro euros yen rupee rupees peso pesos ducat ducats guilder guilders krona kronor krone kroner lira lire ruble
rubles rouble roubles dinar dinars yuan thaler thalers sixpence twopence threepence""".split())
COLOURS = frozenset("""red orange yellow green blue purple violet pink brown black white grey gray crimson scarlet
saffron slate ochre amber azure indigo maroon navy teal turquoise beige tan ivory cream gold golden silver bronze
copper russet olive lilac lavender magenta vermilion emerald sapphire ruby rose rust umber sepia khaki chestnut
auburn ginger cerulean cobalt charcoal sable ebony tawny buff fawn mauve plum claret cyan""".split())
SHADES = frozenset("dark light pale deep bright vivid dull faded sober pastel rich dusky".split())
MONTHS = frozenset("january february march april may june july august september october november december".split())
WEEKDAYS = frozenset("monday tuesday wednesday thursday friday saturday sunday".split())
SEASONS = frozenset("spring summer autumn fall winter".split())
KIN = frozenset("""mother father parent sister brother son daughter aunt uncle cousin nephew niece wife husband widow
widower grandmother grandfather grandson granddaughter godmother godfather godson goddaughter stepmother stepfather
twin bride groom fiance fiancee child children baby infant heir""".split())
PEOPLE = frozenset("""man woman men women boy girl lad lass king queen prince princess lord lady duke duchess bishop
priest vicar monk nun friar captain doctor nurse clerk servant maid friend neighbour neighbor guest host hostess
stranger cook chef smith judge mayor president governor general colonel sergeant soldier sailor pilot chief
merchant widow orphan poet artist scholar student pupil apprentice master mistress innkeeper landlord landlady
tenant squire knight thief fool hermit fiddler teacher farmer baker miller butcher sailor tailor weaver carpenter
officer minister preacher lawyer banker trader dealer painter printer potter porter brewer carter carver cobbler
tanner dyer player singer dancer writer ruler owner leader member partner founder prisoner traveller traveler
stranger rector curator doctor actor author sculptor editor sexton ostler monk poacher glover cooper mason""".split())
_PERSON_SUFFIX = ("ist", "keeper", "maker", "monger", "wright", "smith", "man", "woman", "men", "women", "ess", "herd",
                  "maid", "master", "mistress", "boy", "girl")


def tokens(text: str) -> list[tuple[int, int, str]]:
    """(start, end, token) of the words, numbers and CJK characters of `text`."""
    return [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]


def stem(word: str) -> str:
    """A crude English stem for matching words across forms ("lives" ~ "live", "mended" ~ "mender")."""
    w = word.lower().replace("’", "'").split("'")[0]
    if len(w) > 4 and w.endswith(("ies", "ied")):  # "carries", "married"
        w = w[:-3] + "y"
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    for suffix in ("ing", "ed", "er"):
        if len(w) > len(suffix) + 2 and w.endswith(suffix):
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w.endswith("e"):
        w = w[:-1]
    return w[:6]


def content_stems(text: str) -> set[str]:
    return {stem(t) for _, _, t in tokens(text) if t.lower() not in STOP and not _is_number_token(t)}


def _is_number_token(t: str) -> bool:
    return any(c.isdigit() for c in t)


# -- numbers -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Number:
    start: int
    end: int
    value: float
    currency: bool = False  # followed by a currency unit or written with a currency sign


def digit_value(token: str) -> float | None:
    """ "1,250" -> 1250, "$240" -> 240, "3.5" -> 3.5, "21st" -> 21."""
    t = re.sub(r"(?:st|nd|rd|th)$", "", token.lstrip("$£€¥"))
    t = t.replace(",", "")
    try:
        return float(t)
    except ValueError:
        return None


def word_value(words: list[str]) -> float | None:
    """ "thirty-one" -> 31, "four hundred and twelve" -> 412, "a hundred" -> 100, "two dozen" -> 24."""
    parts = [p for w in words for p in w.lower().split("-")]
    if not parts or parts[-1] == "and" or parts[0] == "and":
        return None
    total, current, seen = 0, 0, False
    for p in parts:
        if p in UNITS or p in TENS:
            current += UNITS.get(p, TENS.get(p, 0))
            seen = True
        elif p in ("a", "an"):
            current += 1
        elif p == "hundred":
            current = max(current, 1) * 100
            seen = True
        elif p in SCALES:
            total += max(current, 1) * SCALES[p]
            current, seen = 0, True
        elif p in COUNT_WORDS:
            current = max(current, 1) * COUNT_WORDS[p]
            seen = True
        elif p != "and":
            return None
    return float(total + current) if seen else None


def parse_number(text: str) -> float | None:
    """The value of a number written in digits or words ("thirty-one", "1,250", "$240"), else None."""
    toks = [t for _, _, t in tokens(text)]
    if len(toks) == 1 and _is_number_token(toks[0]):
        return digit_value(toks[0])
    if len(toks) == 1 and toks[0].lower() in TIMES:
        return float(TIMES[toks[0].lower()])
    return word_value(toks)


def _number_word(t: str) -> bool:
    return all(p in UNITS or p in TENS or p in SCALES or p in COUNT_WORDS for p in t.lower().split("-"))


def find_numbers(text: str) -> list[Number]:
    """Every number in `text` (digits and words), with its value and whether it is an amount of money."""
    toks = tokens(text)
    found: list[Number] = []
    i = 0
    while i < len(toks):
        start, end, t = toks[i]
        if _is_number_token(t) and not t.lower().endswith(("st", "nd", "rd", "th")):
            value = digit_value(t)
            j = i + 1
        elif _number_word(t) or (t.lower() in ("a", "an") and i + 1 < len(toks)
                                 and toks[i + 1][2].lower() in {*SCALES, *COUNT_WORDS, *CURRENCY}):
            j = i + 1
            while j < len(toks) and (_number_word(toks[j][2]) or (toks[j][2].lower() == "and" and j + 1 < len(toks)
                                                                   and _number_word(toks[j + 1][2])
                                                                   and toks[j - 1][2].lower() in SCALES)):
                j += 1
            value = word_value([x for _, _, x in toks[i:j]]) if j > i + 1 or t.lower() not in ("a", "an") else 1.0
        else:
            i += 1
            continue
        if value is None:
            i += 1
            continue
        end = toks[j - 1][1]
        money = t[:1] in "$£€¥" or (j < len(toks) and toks[j][2].lower() in CURRENCY)
        if t.lower() in ("a", "an") and not money and (j >= len(toks) or toks[j][2].lower() not in {*SCALES, *COUNT_WORDS}):
            i = j
            continue  # "a" alone is a number only before a scale or a currency unit
        found.append(Number(start, end, value, money))
        i = j
    for w, v in TIMES.items():
        for m in re.finditer(rf"\b{w}\b", text, re.IGNORECASE):
            found.append(Number(m.start(), m.end(), v))
    for w in ("sixpence", "twopence", "threepence"):
        for m in re.finditer(rf"\b{w}\b", text, re.IGNORECASE):
            found.append(Number(m.start(), m.end(), {"sixpence": 6, "twopence": 2, "threepence": 3}[w], True))
    return sorted(found, key=lambda n: n.start)


def number_values(text: str) -> set[float]:
    return {n.value for n in find_numbers(text)}


# -- the expected answer type ------------------------------------------------------------------------
_TYPE_RULES = [
    (AMOUNT, r"\bhow much (?:did|does|do|was|were|is|are|had|has|would|will)\b.*\b(?:cost|costs|charge|charged|"
             r"charges|pay|paid|pays|earn|earned|earns|sell|sold|fetch|fetched|spend|spent|owe|owed|worth|price)\b"),
    (AMOUNT, r"\b(?:what|which) (?:was |is |were |are )?(?:the )?(?:price|cost|fare|fee|wage|wages|rent|toll|"
             r"salary|charge|sum|amount of money)\b|\bwhat did .* (?:cost|charge|pay|fetch|bring|earn)\b|"
             r"\bwhat price\b|\bhow much money\b"),
    (DATE, r"\b(?:what|which|in what|in which) (?:year|date|day|month|century|decade|season)\b|^\s*when\b|"
           r"\bon what (?:day|date)\b|\bwhat time of year\b"),
    (AGE, r"\bhow old\b|\bwhat (?:was|is) (?:the )?age\b|\bat what age\b"),
    (NUMBER, r"\bhow (?:many|tall|long|far|deep|high|wide|heavy|big|large|often|fast|thick|broad|old)\b|"
             r"\b(?:what|which) (?:was |is |were |are )?(?:the )?(?:number|population|height|length|depth|width|"
             r"distance|weight|size|total|count|age|speed)\b"),
    (AMOUNT, r"\bhow much\b"),
    (COLOUR, r"\b(?:what|which|in what|of what) (?:colou?r|shade|hue)s?\b"),
    (GROUP, r"\b(?:what|which) (?:(?:is|was|were|are) )?(?:the |his |her |their |its )?(?:\w+ )?(?:nationality|"
            r"citizenship|language|languages|religion|faith|ethnicity|denomination)\b"),
    (NAME, r"\bwhat (?:was|is|were|are) (?:the )?names? of\b|\bwhat (?:was|is|were|are) .* (?:called|named)\b|"
           r"\bwhat did .* (?:call|name)\b"),
    (ROLE, r"^\W*(?:what|which)\W+(?:\S+\s+){0,5}?(?:trade|job|occupation|profession|position|post|office|rank|"
           r"title|calling|employment|vocation)\b|^\W*what work\b|\bwork as\b"),
    (KINSHIP, r"^\W*(?:what|which) (?:relation|relative|relationship|kin)\b|\bhow (?:was|were|is|are) .* related\b"),
    (PERSON, r"^\s*(?:who|whom|whose)\b|\b(?:to|from|by|with|for) whom\b|\bwhich (?:man|woman|person|of the)\b"),
    (PLACE, r"^\s*where\b|\b(?:what|which) (?:place|town|city|village|country|island|port|river|county|street|"
            r"house|inn|region|land|harbour|harbor)\b|\bin what place\b|\bfrom where\b|"
            r"^\W*(?:what|which) (?:is|was|are|were) (?:the |its |their |his |her )?(?:\w+ )?(?:capital|city|town|"
            r"village|country|island|port|river|county|province|birthplace|hometown|homeland)\b"),
]


def answer_type(question: str) -> str:
    """The kind of answer a question asks for (TREC-style coarse classes): person, name, group
    (nationality, language, religion), place, date, number, age, amount, colour, role, kinship, or other."""
    q = " ".join(question.lower().split())
    for kind, pattern in _TYPE_RULES:
        if re.search(pattern, q):
            return kind
    return OTHER


def asked_noun(question: str) -> str | None:
    """The stem of the noun whose name a question asks for: "What was the name of Jerusha Moyle's father?"
    -> "father"; "Who was the captain of the Orinda?" -> "captain"; else None."""
    q = " ".join(question.split())
    m = re.search(r"\bnames? of (.*)", q) or re.search(r"^\W*(?:who|whom) (?:was|is|were|are) ((?:the|a|an) \w+) of\b", q,
                                                        re.IGNORECASE)
    if not m:
        return None
    for word in re.findall(r"[\w'’-]+", m.group(1))[:5]:
        if word.lower() in DETERMINERS or word[:1].isupper() or word.endswith(("'s", "’s")):
            continue  # "the", "Agnetha", "Skarr's", "keeper's"
        return None if word.lower() in STOP else stem(word)
    return None


# -- candidate answers ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    text: str
    sentence: int  # index into the evidence sentences
    start: int  # offsets in that sentence
    end: int


def known_names(texts: list[str]) -> set[str]:
    """Lower-case words written capitalised somewhere other than at a sentence start."""
    names = set()
    for text in texts:
        for k, (_, _, t) in enumerate(tokens(text)):
            if k > 0 and t[:1].isupper() and t.lower() not in STOP:
                names.add(t.lower())
    return names


def name_phrases(text: str, names: set[str]) -> list[tuple[int, int]]:
    """(start, end) of capitalised name phrases ("Greta Solberg", "the Fellowship of Honest Weavers" ->
    "Fellowship of Honest Weavers"): runs of capitalised words (joined by "of"), a sentence's first word
    only when it is known as a name elsewhere or followed by another capitalised word."""
    toks = tokens(text)
    out, i = [], 0
    while i < len(toks):
        t = toks[i][2]
        cap = t[:1].isupper() and t.lower() not in STOP and t.lower() not in MONTHS | WEEKDAYS and t != "I"
        if not cap:
            i += 1
            continue
        j = i + 1
        while j < len(toks):
            nt = toks[j][2]
            if nt[:1].isupper() and nt.lower() not in STOP and text[toks[j - 1][1] : toks[j][0]].strip() == "":
                j += 1
            elif nt == "of" and j + 1 < len(toks) and toks[j + 1][2][:1].isupper() and toks[j + 1][2].lower() not in STOP:
                j += 2
            else:
                break
        first = toks[i][0] == len(text) - len(text.lstrip()) or text[: toks[i][0]].strip() in ('"', "'", "“", "(")
        if not first or j > i + 1 or t.lower() in names:
            out.append((toks[i][0], toks[j - 1][1]))
        i = j
    return out


def noun_phrases(text: str) -> list[tuple[int, int]]:
    """(start, end) of the word runs after a function word, up to three words, cut at function words and
    punctuation: after a determiner with and without it ("a glovemaker", "her grandmother", "the kitchen"),
    after any other ("as town crier") without it; those after a determiner first."""
    toks = tokens(text)
    first, rest = [], []
    for k, (s, e, t) in enumerate(toks):
        if t.lower() not in STOP:
            continue
        j = k + 1
        while j < len(toks) and j - k <= 3 and toks[j][2].lower() not in STOP and not _is_number_token(toks[j][2]) \
                and text[toks[j - 1][1] : toks[j][0]].strip() in ("", "-"):
            j += 1
        for last in range(k + 1, j):
            if t.lower() in DETERMINERS:
                first.append((s, toks[last][1]))
                first.append((toks[k + 1][0], toks[last][1]))
            else:
                rest.append((toks[k + 1][0], toks[last][1]))
    return first + rest


def _personal(phrase: str, kin_only: bool = False) -> bool:
    """Is the phrase's head a kin noun or (unless `kin_only`) a role noun ("schoolteacher", "glovemaker")?"""
    head = phrase.lower().split()[-1] if phrase.split() else ""
    head = head[:-1] if head.endswith("s") and head[:-1] in KIN | PEOPLE else head
    if kin_only:
        return head in KIN
    return head in KIN or head.endswith(_PERSON_ENDINGS)


_PERSON_ENDINGS = (*sorted(PEOPLE), *_PERSON_SUFFIX)  # "schoolteacher", "glovemaker"


def _date_spans(text: str) -> list[tuple[int, int]]:
    low = text.lower()
    month = "|".join(MONTHS)
    day = "|".join(WEEKDAYS)
    season = "|".join(SEASONS)
    ordinal = r"(?:\d{1,2}(?:st|nd|rd|th)|" + "|".join(sorted(ORDINALS, key=len, reverse=True)) + ")"
    year = r"(?:1\d{3}|20\d{2})"
    patterns = [
        rf"(?:the\s+)?(?:{ordinal}|\d{{1,2}})\s+(?:day\s+)?(?:of\s+)?(?:{month})(?:,?\s+{year})?",
        rf"(?:{month})\s+(?:{ordinal}|\d{{1,2}})(?:,?\s+{year})?",
        rf"(?:the\s+)?(?:(?:{ordinal}|last)\s+)?(?:{day})(?:\s+(?:of|in)\s+(?:{month}))?",
        rf"(?:the\s+)?(?:{season}|end|beginning|middle)\s+of\s+(?:{year}|(?:{month}))",
        rf"(?:{month})(?:,?\s+{year})?",
        rf"\b{year}s?\b",
    ]
    spans = []
    for p in patterns:
        spans += [(m.start(), m.end()) for m in re.finditer(rf"\b{p}\b", low)]
    return spans


def candidates(kind: str, sentences: list[str], question: str, names: set[str] | None = None) -> list[Candidate]:
    """Spans of `sentences` that could answer a question of type `kind`, none of them restating the
    question (its own names and numbers are not its answer)."""
    names = known_names(sentences + [question]) if names is None else names
    asked = content_stems(question)
    subject = question_names(question)
    asked_numbers = number_values(question)
    found: list[Candidate] = []
    for i, text in enumerate(sentences):
        spans: list[tuple[int, int]] = []
        if kind in (NUMBER, AGE, AMOUNT):
            for n in find_numbers(text):
                if n.value in asked_numbers or n.currency != (kind == AMOUNT):
                    continue  # an amount of money answers "how much", never "how many" or "how old"
                units = []  # with its unit: "nine pennies", "six days", "18 nautical miles"
                for _, e, t in tokens(text[n.end:])[:2]:
                    if t.lower() in STOP or _is_number_token(t) or (units and text[n.end + units[-1] : n.end + e].count(",")):
                        break
                    units.append(e)
                if kind != AMOUNT or text[n.start] in "$£€¥" or not units:
                    spans.append((n.start, n.end))
                spans += [(n.start, n.end + e) for e in units]
        elif kind == DATE:
            spans = _date_spans(text)
        elif kind == COLOUR:
            toks = tokens(text)
            k = 0
            while k < len(toks):
                if toks[k][2].lower() in COLOURS | SHADES:
                    j = k
                    while j < len(toks) and toks[j][2].lower() in COLOURS | SHADES:
                        j += 1
                    run = toks[k:j]
                    colours = [r for r in run if r[2].lower() in COLOURS]
                    if colours:
                        spans.append((run[0][0], run[-1][1]))
                        spans.append((colours[0][0], run[-1][1]))
                        spans.append((colours[-1][0], colours[-1][1]))
                    k = j
                else:
                    k += 1
        elif kind in (PERSON, NAME, GROUP):
            spans = name_phrases(text, names)
            if kind == PERSON:  # a name just after "at" or "in" is a place ("the mill at Crossley Beck")
                spans = [(s, e) for s, e in spans if text[:s].split()[-1:] not in (["at"], ["in"], ["near"])]
                spans += [(s, e) for s, e in noun_phrases(text) if _personal(text[s:e])]
        elif kind == PLACE:
            spans = name_phrases(text, names)
            toks = tokens(text)
            for s, e in noun_phrases(text):
                before = [t for _, end, t in toks if end <= s]
                if before and before[-1].lower() in LOCATIVE | DETERMINERS:
                    prev = before[-1].lower() if before[-1].lower() in LOCATIVE else (before[-2].lower() if len(before) > 1 else "")
                    if prev in LOCATIVE:
                        spans.append((s, e))
                        # with the name it introduces: "in the city of Danzig"
                        spans += [(s, ne) for ns, ne in name_phrases(text, names) if re.fullmatch(r"\s+of\s+", text[e:ns])]
        elif kind in (ROLE, KINSHIP):  # a role or kin noun ("a glovemaker", "her grandmother"; a role: "as town crier")
            spans = [(s, e) for s, e in noun_phrases(text) if _personal(text[s:e], kin_only=kind == KINSHIP)
                     or (kind == ROLE and re.search(r"\bas\s+$", text[:s]))]
        else:
            spans = name_phrases(text, names) + noun_phrases(text)
            spans += [(n.start, n.end) for n in find_numbers(text) if n.value not in asked_numbers]
        for s, e in dict.fromkeys(spans):
            phrase = text[s:e].strip(" ,;:.")
            words = content_stems(phrase)
            if not phrase or (words and words <= asked) or (not words and not find_numbers(phrase) and kind != DATE):
                continue
            if kind == PLACE and words & subject:  # "Born Joseph Dwan" is who, not where Allan Dwan was born
                continue
            found.append(Candidate(phrase, i, s, s + len(phrase)))
    return list({(c.text.lower(), c.sentence): c for c in found}.values())


# -- relevance and support -----------------------------------------------------------------------------
def question_names(question: str) -> set[str]:
    """Stems of the capitalised words of a question after its first word ("How old was Greta Solberg?")."""
    return {stem(t) for k, (_, _, t) in enumerate(tokens(question)) if k > 0 and t[:1].isupper()
            and t.lower() not in STOP and t != "I"}


def relevant(question: str, sentences: list[str]) -> tuple[list[int], list[int], bool]:
    """The evidence sentences that bear on the question: those naming what it names and those linked to
    them, each most relevant first, and whether the question's names occur in the evidence at all (False:
    it asks about someone or something the evidence never names).

    A sentence bears on the question when it holds one of the question's names (or, for a question
    without names, one of its content words), or shares a name or noun that the question does not use
    with such a sentence (the second sentence of a chain: "the miller ... Ivo Brandt" -> "The miller's brother")."""
    names = question_names(question)
    asked = content_stems(question)
    words = [content_stems(s) for s in sentences]
    focus_terms = names or asked
    score = [len(w & asked) + 2 * len(w & names) for w in words]
    focus = [i for i, w in enumerate(words) if w & focus_terms]
    if not focus:  # no sentence speaks of what the question asks
        return [], [], not names
    links = _links(question, sentences)
    linked = [i for i in range(len(sentences)) if i not in focus and any(links[i] & links[f] for f in focus)]
    return sorted(focus, key=lambda i: -score[i]), sorted(linked, key=lambda i: -score[i]), True


def _links(question: str, sentences: list[str]) -> list[set[str]]:
    """Each sentence's link terms (`link_terms`) that the question does not use."""
    asked = content_stems(question)
    lower = {t for s in sentences for _, _, t in tokens(s) if t.islower()}
    taken = asked | {"=" + a for a in asked}
    return [link_terms(s, lower) - taken for s in sentences]


def chain_cover(question: str, sentences: list[str], direct: list[int], linked: list[int]) -> tuple[dict[int, int], set[int]]:
    """How many of the question's content words each sentence covers, a linked sentence together with the
    named sentence it is linked to; and the linked sentences that cover more than that named sentence alone:
    they answer what the named one only introduces ("The gamekeeper ... was Reuben Cleary" -> "The
    gamekeeper ... owned a lurcher" for "What breed of dog did Reuben Cleary own?")."""
    asked = content_stems(question)
    words = [content_stems(s) & asked for s in sentences]
    links = _links(question, sentences)
    cover = {i: len(words[i]) for i in direct}
    adds = set()
    for i in linked:
        anchors = [f for f in direct if links[i] & links[f]]
        cover[i] = max((len(words[i] | words[f]) for f in anchors), default=len(words[i]))
        if any(len(words[i] | words[f]) > len(words[f]) for f in anchors):
            adds.add(i)
    return cover, adds


def link_terms(sentence: str, lower: set[str]) -> set[str]:
    """What a sentence is about, for linking it to another: the words of its names (a first word too when
    the evidence never writes it in lower case: "John took the football.") and the nouns it names with a
    determiner or a possessive ("the miller", "Brindlecombe's sexton")."""
    toks = tokens(sentence)
    found = {"=" + stem(t) for k, (_, _, t) in enumerate(toks) if t[:1].isupper() and t.lower() not in STOP
             and (k > 0 or t.lower() not in lower)}  # a name links only to the same name ("Little Haddow" != "little")
    for k, (_, _, t) in enumerate(toks[:-1]):
        if t.lower() in DETERMINERS or t.endswith(("'s", "’s")):
            for _, _, nxt in toks[k + 1 : k + 3]:
                if nxt.lower() in STOP or nxt[:1].isupper():
                    break
                found.add(stem(nxt))
    return found


def supports(free: str, question: str, sentence: str, evidence: str, kind: str, found: list[Candidate]) -> bool:
    """Does `sentence` support the free answer `free`: its names and numbers (by value) all occur in the
    sentence or the question, its other content words are in the evidence, and (for a typed question) it
    contains one of the sentence's candidates of that type."""
    answer_numbers = number_values(free)
    if not answer_numbers <= number_values(sentence) | number_values(question):
        return False
    held = content_stems(sentence)
    asked = content_stems(question)
    names = {stem(t) for _, _, t in tokens(free) if t[:1].isupper() and t.lower() not in STOP}
    if not names <= held | question_names(question):
        return False
    new = content_stems(free) - asked
    new_names = names - question_names(question)
    if new_names and not new_names <= held:
        return False
    if new and len(new & content_stems(evidence)) / len(new) < MIN_COVERAGE:
        return False
    if kind == OTHER:
        return bool(new & held) or bool(answer_numbers - number_values(question))
    low = " " + " ".join(t.lower() for _, _, t in tokens(free)) + " "
    for c in found:
        value = parse_number(c.text) if kind in (NUMBER, AGE, AMOUNT) else None
        if value is not None and value in answer_numbers:
            return True
        if " " + " ".join(t.lower() for _, _, t in tokens(c.text)) + " " in low:
            return True
    return False


# -- scoring spans with the model ----------------------------------------------------------------------
def reader_prompt(question: str, context: str) -> str:
    """The question before and after the text: the best of 9 prompt forms tried on facts hidden in filler
    with SmolLM2-135M (10/16 correct, against 0/16 for text-then-question)."""
    return f"Question: {question}\n\nText: {context}\n\nQuestion: {question}"


@torch.inference_mode()
def span_logprobs(engine: Engine, prompt_ids: list[int], spans: list[str], batch_size: int = 16) -> list[float]:
    """Mean log P(span tokens | prompt) of each span, batched (right-padded, so positions are unchanged)."""
    tok = engine.tokenizer
    span_ids = [tok(" " + s, add_special_tokens=False)["input_ids"] or [_pad(engine)] for s in spans]
    out: list[float] = []
    for b in range(0, len(span_ids), batch_size):
        group = span_ids[b : b + batch_size]
        seqs = [prompt_ids + s for s in group]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), _pad(engine), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for k, s in enumerate(seqs):
            ids[k, : len(s)] = torch.tensor(s)
            mask[k, : len(s)] = 1
        logits = engine.backbone(input_ids=ids, attention_mask=mask).logits.float()  # (B, T, V)
        logp = torch.log_softmax(logits[:, :-1], dim=-1)  # (B, T-1, V): position t predicts token t+1
        for k, s in enumerate(group):
            first = len(prompt_ids)
            targets = torch.tensor(s)
            picked = logp[k, first - 1 : first - 1 + len(s)].gather(1, targets[:, None])  # (len(s), 1)
            out.append(float(picked.mean()))
    return out


def score_candidates(engine: Engine, question: str, context: str, spans: list[str]) -> tuple[list[float], float]:
    """Each span's log P(span | evidence, question), mean per token, and the abstention phrase's: what a
    chosen span must beat. (Pointwise mutual information, the same minus log P(span | question), chose the
    right span less often on the dev split: 20 of 30 one-hop facts against 25; docs/answering.md.)"""
    scores = span_logprobs(engine, engine.chat_ids(reader_prompt(question, context), prefix="Answer:"),
                           spans + [NOT_IN_DOCUMENT])
    return scores[:-1], scores[-1]


# -- the answer ----------------------------------------------------------------------------------------
@dataclass
class Grounded:
    """What `grounded_answer` decided: the answer text, the sentence it rests on (None: abstained), the
    evidence sentences that bear on the question, and how the answer was reached."""

    text: str
    quote: Span | None
    cited: list[Span]
    how: str  # "free" (the model's answer, verified), "span" (chosen from the evidence), "abstain"
    margin: float | None = None  # the best span's log P over the abstention phrase's (the span path only)


def grounded_answer(engine: Engine, question: str, evidence: list[Span], free: str | None) -> Grounded:
    """The answer to `question` from `evidence` (document sentences): `free` (the model's own answer)
    when the evidence supports it, else the best candidate span of the evidence, else an abstention."""
    evidence = [s for s in evidence if not reference_entry(s.text)]  # a bibliography cites, it does not say
    texts = [plain(s.text) for s in evidence]
    direct, linked, named = relevant(question, texts)
    if not named or not direct:
        return Grounded(NOT_IN_DOCUMENT, None, [], "abstain")
    focus = (direct + linked)[:MAX_FOCUS]
    cited = [evidence[i] for i in sorted(focus)]
    kind = answer_type(question)
    names = known_names(texts + [question])
    found = candidates(kind, [texts[i] for i in focus], question, names)
    noun = asked_noun(question) if kind in (PERSON, NAME) else None
    if noun:  # "the name of Agnetha Skarr's husband": only a sentence that speaks of a husband answers
        found = [c for c in found if noun in content_stems(texts[focus[c.sentence]])]
    if not found and kind in (ROLE, KINSHIP):  # the answer is not a role noun ("she dyed wool"): any span
        kind = OTHER
        found = candidates(kind, [texts[i] for i in focus], question, names)
    found = [Candidate(c.text, focus[c.sentence], c.start, c.end) for c in found]
    cover, adds = chain_cover(question, texts, direct, [i for i in linked if i in focus])
    chained = [c for c in found if c.sentence in adds and not _bridge(c, texts, direct)]
    if chained:  # a second sentence answers what the named one only introduces (not with the words linking them)
        found = chained
    elif any(c.sentence in direct for c in found):  # else a linked sentence answers only what the named ones do not
        found = [c for c in found if c.sentence in direct]
    answering = sorted({c.sentence for c in found}, key=focus.index) if found else focus
    context = engine.clip(" ".join(texts[i] for i in sorted(focus)), max(64, engine.window // 2))  # room for the span
    verified = None
    if free and not is_abstention(free):
        free = first_sentence(free)
        for i in answering:
            mine = [c for c in found if c.sentence == i]
            if supports(free, question, texts[i], context, kind, mine):
                verified = i
                break
    if verified is not None and ((kind == OTHER and not chained) or len(_groups(found)) < 2):
        return Grounded(concise(free, found, kind, texts[verified], question), evidence[verified], cited, "free")
    if not found:
        return Grounded(NOT_IN_DOCUMENT, None, [], "abstain")
    found = found[:MAX_CANDIDATES]
    groups = _groups(found)
    scores, abstain_score = score_candidates(engine, question, context, [c.text for c in found])
    n_asked = max(1, len(content_stems(question)))  # a span of the sentence holding more of the question ranks higher
    freely = {id(c) for g in groups if verified is not None and any(_names(free, c) for c in g) for c in g}
    ranked = [scores[k] + COVERAGE_WEIGHT * cover[c.sentence] / n_asked for k, c in enumerate(found)]
    # the candidates the verified free answer names come first (the model read the whole evidence; a
    # bonus of 1 instead lost 1 of 35 dev infobox questions and 2 of 7 tiny documents)
    pool = [k for k, c in enumerate(found) if id(c) in freely] or range(len(found))
    best = max(pool, key=lambda k: ranked[k])
    group = next(g for g in groups if found[best] in g)
    if id(found[best]) in freely:  # the free answer names the best candidate: that one, in the document's words
        return Grounded(concise(free, group, kind, texts[found[best].sentence], question), evidence[found[best].sentence],
                        cited, "free")
    margin = scores[best] - abstain_score
    if margin < MIN_MARGIN:
        return Grounded(NOT_IN_DOCUMENT, None, [], "abstain", margin)
    chosen = max(group, key=lambda c: len(c.text)) if kind == DATE else found[best]  # a date in full, not its year
    return Grounded(chosen.text, evidence[chosen.sentence], cited, "span", margin)


def _bridge(candidate: Candidate, texts: list[str], direct: list[int]) -> bool:
    """Is a linked sentence's candidate made mostly of words of the named sentences, i.e. what links the two
    ("The gamekeeper of Wragby Chase owned a lurcher": "The gamekeeper", "Wragby Chase")?"""
    words = content_stems(candidate.text)
    return bool(words) and any(2 * len(words & content_stems(texts[i])) >= len(words) for i in direct)


def _groups(found: list[Candidate]) -> list[list[Candidate]]:
    """Candidates grouped by place: overlapping spans of one sentence ("slate grey", "grey") are one answer."""
    groups: list[list[Candidate]] = []
    for c in found:
        for g in groups:
            if any(o.sentence == c.sentence and o.start < c.end and c.start < o.end for o in g):
                g.append(c)
                break
        else:
            groups.append([c])
    return groups


def _names(free: str, candidate: Candidate) -> bool:
    """Does a free answer name this candidate (its words, or its number by value)?"""
    if number_values(candidate.text) & number_values(free):
        return True
    words = " ".join(t.lower() for _, _, t in tokens(candidate.text))
    return f" {words} " in " " + " ".join(t.lower() for _, _, t in tokens(free)) + " "


def concise(free: str, found: list[Candidate], kind: str, sentence: str, question: str) -> str:
    """A verified free answer as the evidence's own words: for a typed question the longest candidate span
    it names ("Amos Wray married the widow of the blacksmith" -> "widow": a small model recombines the
    sentence's words); for any other the shortest stretch of its sentence that holds the answer's words
    the question does not ("carved a figurehead for the shipyards" -> "figureheads for the shipyards at
    Porthkennis"), else a short answer as it is and a long one as the longest candidate it contains."""
    if kind == OTHER:
        window = verbatim(free, sentence, question)
        if window or len(free.split()) <= 12:
            return window or free
    low = free.lower()
    inside = [c.text for c in found if c.text.lower() in low]
    return max(inside, key=len) if inside else free


def verbatim(free: str, sentence: str, question: str) -> str | None:
    """The shortest stretch of `sentence` holding every content word of `free` that the question lacks
    and the sentence has (by stem), or None when it has none of them."""
    wanted = (content_stems(free) - content_stems(question)) & content_stems(sentence)
    toks = [(s, e, stem(t)) for s, e, t in tokens(sentence)]
    best = None
    for i, (s, _, w) in enumerate(toks):
        if w not in wanted:
            continue
        seen = set()
        for _, e, v in toks[i:]:
            if v in wanted:
                seen.add(v)
            if seen == wanted:
                if best is None or e - s < best[1] - best[0]:
                    best = (s, e)
                break
    return sentence[best[0] : best[1]] if best else None


def first_sentence(text: str) -> str:
    """A free answer's first line and sentence (small models run on into new questions)."""
    text = text.strip().split("\n")[0].strip()
    m = re.search(r"(?<=[.!?。！？])\s", text)
    return text[: m.start()].strip() if m else text


def index_evidence(texts: list[str], question: str, free: str | None, k: int = MAX_FOCUS) -> list[int]:
    """For a memory whose reader saw no document sentences (kv, latent, notes): the `k` sentences of the
    document index that share most words with the question and the answer (IDF-weighted), in order."""
    query = content_stems(question) | (content_stems(free) if free else set())
    numbers = number_values(free or "") | number_values(question)
    if not query and not numbers:
        return []
    words = [content_stems(t) for t in texts]
    df: dict[str, int] = {}
    for w in words:
        for x in w & query:
            df[x] = df.get(x, 0) + 1
    def score(i: int) -> float:
        s = sum(math.log((len(texts) + 1) / (df[x] + 0.5)) for x in words[i] & query)
        return s + (2.0 if numbers & number_values(texts[i]) else 0.0)

    scored = [(score(i), i) for i in range(len(texts))]
    best = sorted((x for x in scored if x[0] > 0), reverse=True)[:k]
    return sorted(i for _, i in best)


def _pad(engine: Engine) -> int:
    """The id that pads a batch of scored spans (masked out, so any id the tokenizer knows works)."""
    return pad_id(engine.tokenizer) or 0
