"""Formatted documents end to end: facts asked back from a PDF (page cited) and from DOCX, EPUB and HTML
(heading cited), and what extracting a PDF costs beside reading its text into the default memory.

(a) A generated --pages-page PDF (fpdf2), one planted fact per page among filler prose written here;
    each fact's question through `memgpt.apps.ask` (the default model, the default memory). A hit: the
    answer holds the gold and the answer's quote (else its first citation) is on the fact's page.
(b) The same facts as DOCX, EPUB and HTML, one heading ("Chapter N") per fact's section; a hit: the
    gold in the answer and the quote under the fact's heading.
(c) Seconds to `load_document` a --cost-pages PDF (filler of distinct sentences: the memory embeds a
    repeated sentence once) beside seconds to `read()` its extracted text into the default memory, both
    as seconds per 100 pages.

    nice -n 10 python benchmarks/formats.py                      # all of it (about 10-20 min on a CPU)
    python benchmarks/formats.py --formats pdf --pages 10 --cost-pages 20 --out /tmp/f.json   # a quick look

Writes benchmarks/results/formats.json and prints a table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import re
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"

# (the fact, its question, accepted answers): one per page / section, written for this benchmark
FACTS = [
    ("The spare key to the boathouse is kept by Marit Lunde.", "Who keeps the spare key to the boathouse?", ["Marit Lunde"]),
    ("The night train to Orsa departs from platform 11.", "Which platform does the night train to Orsa depart from?", ["11"]),
    ("The town archive moved into the old brewery in 1987.", "When did the town archive move into the old brewery?", ["1987"]),
    ("The chess club meets every Thursday in the back room of the Pelican Inn.", "Where does the chess club meet?",
     ["Pelican Inn", "back room"]),
    ("The bridge over the Tarn river was designed by Aurelio Brancati.", "Who designed the bridge over the Tarn river?",
     ["Brancati"]),
    ("The oldest clock in the museum was made by a watchmaker named Sigrun Falk.", "Who made the oldest clock in the museum?",
     ["Sigrun Falk"]),
    ("The ferry to Holmsund carries at most 240 passengers.", "How many passengers can the ferry to Holmsund carry?", ["240"]),
    ("The new school library is named after the poet Edda Rasmussen.", "Who is the new school library named after?",
     ["Edda Rasmussen"]),
    ("The observatory on Kettle Hill opens its dome on the first Friday of each month.",
     "When does the observatory on Kettle Hill open its dome?", ["first Friday"]),
    ("The bakery on Mill Lane is famous for its cardamom buns.", "What is the bakery on Mill Lane famous for?", ["cardamom"]),
    ("The cottage of the lighthouse keeper is painted a pale green.", "What colour is the cottage of the lighthouse keeper?",
     ["green"]),
    ("The annual kite festival is held on Brennan Beach.", "Where is the annual kite festival held?", ["Brennan Beach"]),
    ("The west wing of the hospital was paid for by the shipping merchant Oskar Vedel.",
     "Who paid for the west wing of the hospital?", ["Oskar Vedel"]),
    ("The first violinist of the city orchestra is Lena Hartwig.", "Who is the first violinist of the city orchestra?",
     ["Lena Hartwig"]),
    ("The canal locks are opened by hand at six in the morning.", "At what time are the canal locks opened?",
     ["six", "6"]),
    ("The town seal is locked in an iron chest in the office of the mayor.", "Where is the town seal locked?",
     ["iron chest"]),
    ("The football ground near the gasworks holds 8,500 spectators.", "How many spectators does the football ground hold?",
     ["8,500", "8500"]),
    ("The village well was dug by the Tallis family.", "Who dug the village well?", ["Tallis"]),
    ("The mountain hut at Grey Pass sleeps twelve walkers.", "How many walkers does the mountain hut at Grey Pass sleep?",
     ["twelve", "12"]),
    ("The printing press in the cellar was bought from a firm in Leipzig.", "Where was the printing press bought?",
     ["Leipzig"]),
    ("The tram line to the harbour closed in 1962.", "When did the tram line to the harbour close?", ["1962"]),
    ("The rarest tree in the botanical garden is a Chilean monkey puzzle.", "What is the rarest tree in the botanical garden?",
     ["monkey puzzle"]),
    ("The local radio station broadcasts from a tower on Crane Island.", "Where does the local radio station broadcast from?",
     ["Crane Island"]),
    ("The brass band is conducted by Piotr Zielinski.", "Who conducts the brass band?", ["Zielinski"]),
    ("The water mill by the dam grinds rye on Saturdays.", "What does the water mill grind on Saturdays?", ["rye"]),
    ("The fountain in the market square was carved from red granite.", "What was the fountain in the market square carved from?",
     ["red granite", "granite"]),
    ("The weather station on the pier records the wind speed every ten minutes.",
     "How often does the weather station record the wind speed?", ["ten minutes", "10 minutes"]),
    ("The herb garden of the convent was planted by Sister Agathe.", "Who planted the herb garden of the convent?",
     ["Agathe"]),
    ("The ice rink opens once the lake has frozen to a depth of 20 centimetres.",
     "How deep must the lake freeze before the ice rink opens?", ["20"]),
    ("The bell from the wreck of the Sea Lark hangs in the church of Saint Olaf.",
     "Where does the bell from the wreck of the Sea Lark hang?", ["Saint Olaf"]),
]

FILLER = [
    "The morning was grey and quiet, and most of the shops had not yet opened their shutters.",
    "A light rain fell over the rooftops for an hour and then drifted away towards the hills.",
    "People walked slowly along the main street, stopping now and then to greet a neighbour.",
    "In the afternoon the wind turned and brought the smell of salt and cut grass into the town.",
    "Children played in the park until their parents called them home for supper.",
    "The older houses have thick stone walls that keep them cool through the warmest weeks.",
    "Every few years the council talks about widening the road, and every few years nothing happens.",
    "Visitors often remark on how calm the evenings are once the last bus has gone.",
    "The hills beyond the fields turn brown at the end of summer and green again after the rains.",
    "Most families have lived in the district for several generations.",
    "A narrow path runs along the river, shaded by willows and used mostly by dog walkers.",
    "On market days the square fills with stalls selling vegetables, cheese and second-hand books.",
    "The roads were paved only after the war, and some lanes are still gravel today.",
    "In winter the days are short, and lamps are lit in the windows by four in the afternoon.",
    "Nobody could quite remember when the old signpost at the crossroads had been put up.",
    "The post arrives twice a day, once in the morning and once shortly after lunch.",
    "Conversations in the cafe tend to turn to the weather, the harvest and the price of fuel.",
    "Some of the streets are so steep that cyclists push their bikes up them.",
    "The local newspaper prints a column of letters from readers every week.",
    "Gardens behind the terraced houses are small but carefully kept.",
    "When the fog comes in from the sea, the foghorn can be heard far inland.",
    "Few people lock their doors, although most say they intend to start.",
    "The school holidays bring a wave of relatives who stay for a fortnight or more.",
    "There is a bench at the top of the hill from which the whole valley can be seen.",
    "Old photographs of the town show the same streets with fewer cars and more horses.",
    "The evening light lingers on the church tower long after the streets are in shadow.",
    "Repairs to the harbour wall are planned for the spring, weather permitting.",
    "A cat sleeps on the same windowsill every afternoon, indifferent to passers-by.",
    "Most of the trees along the avenue were planted about a hundred years ago.",
    "Shopkeepers sweep the pavement in front of their doors before opening.",
    "The river rises after heavy rain but has not flooded the lower streets in decades.",
    "Walkers come in the autumn to see the colours of the beech woods.",
    "Bicycles lean against almost every wall near the station.",
    "The town hall clock is said to run two minutes fast, and nobody minds.",
    "Farm traffic slows the roads at harvest time, and drivers have learned to be patient.",
    "On clear nights the stars are bright, since there are few street lamps outside the centre.",
    "Letters and parcels for the outlying farms are left at the general store.",
    "The annual fair brings music and crowds for three days each August.",
    "Some streets are named after families, others after battles that few remember.",
    "A small stream runs under the road near the school and into the river.",
]


# fragments of the extraction-cost documents' sentences: the retrieval memory embeds each distinct
# sentence once (a cache), so a cost measured on repeated filler would be too low
WHO = ["The baker", "A fisherman", "The schoolteacher", "An old farmer", "The postman", "A young nurse", "The carpenter",
       "A retired sailor", "The shopkeeper", "A visiting painter", "The station porter", "A student"]
DID = ["walked past", "stopped beside", "painted", "talked about", "waited near", "repaired", "photographed",
       "swept the path by", "sat on the steps of", "looked for", "closed the gate of", "remembered"]
WHAT = ["the chapel", "the grain store", "the ticket office", "the tannery", "the allotments", "the library steps",
        "the cattle market", "the rope works", "the weir", "the customs house", "the sawmill", "the orchard wall"]
WHEN = ["early on Monday", "after the storm", "in the late afternoon", "before the shops opened", "during the fair",
        "on a cold evening", "at the end of the harvest", "while it was raining", "the day after the wedding",
        "in the spring", "around midday", "on the way home"]
HOW = ["and nobody thought much of it", "as the church bell rang", "while the gulls circled overhead",
       "before heading back", "and then went on", "with a dog close behind", "humming an old tune",
       "without saying a word", "as the light faded", "and waved to a neighbour"]


def page_texts(pages: int, seed: int = 0, varied: bool = False) -> list[tuple[list[str], int]]:
    """Each page's paragraphs of filler with its fact planted among them: (paragraphs, fact index);
    `varied`: filler sentences made from fragments (almost all distinct) instead of the FILLER pool."""
    rng = random.Random(seed)
    out = []
    for page in range(pages):
        fact = page % len(FACTS)
        sentences = ([" ".join(rng.choice(part) for part in (WHO, DID, WHAT, WHEN, HOW)) + "." for _ in range(12)]
                     if varied else rng.sample(FILLER, 12))
        sentences.insert(rng.randrange(2, 11), FACTS[fact][0])
        paragraphs = [" ".join(sentences[i : i + 4]) for i in range(0, len(sentences), 4)]
        out.append((paragraphs, fact))
    return out


def make_pdf(path: Path, pages: list[tuple[list[str], int]]) -> list[int]:
    """The PDF, one page per entry; returns the page each entry's fact was written on."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=11)
    fact_pages = []
    for paragraphs, fact in pages:
        pdf.add_page()
        for paragraph in paragraphs:
            if FACTS[fact][0] in paragraph:
                fact_pages.append(pdf.page_no())
            pdf.multi_cell(0, 6, paragraph)
            pdf.ln(4)
    pdf.output(str(path))
    if pdf.page_no() != len(pages):
        raise SystemExit(f"a page overflowed: {pdf.page_no()} pages for {len(pages)}")
    return fact_pages


def make_docx(path: Path, pages: list[tuple[list[str], int]]) -> None:
    import docx

    d = docx.Document()
    for i, (paragraphs, _) in enumerate(pages):
        d.add_heading(f"Chapter {i + 1}", 1)
        for paragraph in paragraphs:
            d.add_paragraph(paragraph)
    d.save(str(path))


def make_epub(path: Path, pages: list[tuple[list[str], int]]) -> None:
    from ebooklib import epub

    book = epub.EpubBook()
    book.set_identifier("formats-benchmark")
    book.set_title("A town")
    book.set_language("en")
    chapters = []
    for i, (paragraphs, _) in enumerate(pages):
        c = epub.EpubHtml(title=f"Chapter {i + 1}", file_name=f"c{i + 1}.xhtml", lang="en")
        c.content = f"<html><body><h1>Chapter {i + 1}</h1>" + "".join(f"<p>{p}</p>" for p in paragraphs) + "</body></html>"
        book.add_item(c)
        chapters.append(c)
    book.toc = chapters
    book.add_item(epub.EpubNcx())
    book.add_item(epub.EpubNav())
    book.spine = chapters
    epub.write_epub(str(path), book)


def make_html(path: Path, pages: list[tuple[list[str], int]]) -> None:
    body = "".join(f"<h1>Chapter {i + 1}</h1>" + "".join(f"<p>{p}</p>" for p in paragraphs)
                   for i, (paragraphs, _) in enumerate(pages))
    path.write_text(f"<!DOCTYPE html><html><head><title>A town</title></head><body>"
                    f"<nav><a href='/'>Home</a></nav><main>{body}</main><footer>Town notes</footer></body></html>")


def contains(answer: str, golds: list[str]) -> bool:
    flat = lambda s: re.sub(r"\s+", " ", s.replace(",", "")).lower()
    return any(flat(g) in flat(answer) for g in golds)


def ask_facts(path: Path, pages: list[tuple[list[str], int]], where: list[object], key: str) -> dict:
    """Every fact's question about `path`; `where[i]`: the page / heading entry i's fact must be cited at."""
    from memgpt.apps.ask import ask

    questions = [FACTS[fact][1] for _, fact in pages]
    start = time.perf_counter()
    answers = ask(path, questions)
    seconds = time.perf_counter() - start
    rows = []
    for (paragraphs, fact), expected, answer in zip(pages, where, answers):
        cited = answer.quote or (answer.citations[0] if answer.citations else None)
        at = getattr(cited, key) if cited is not None else None
        right = contains(str(answer), FACTS[fact][2])
        rows.append({"question": FACTS[fact][1], "gold": FACTS[fact][2][0], "answer": str(answer), "expected": expected,
                     "cited": at, "answer_right": right, "cite_right": at == expected, "hit": right and at == expected,
                     "evidence_source": answer.evidence_source})
    n = len(rows)
    return {"questions": n, "hits": sum(r["hit"] for r in rows), "accuracy": round(sum(r["hit"] for r in rows) / n, 4),
            "answer_right": round(sum(r["answer_right"] for r in rows) / n, 4),
            "cite_right": round(sum(r["cite_right"] for r in rows) / n, 4), "seconds": round(seconds, 1), "rows": rows}


def extraction_cost(folder: Path, pages: int) -> dict:
    """load_document on a `pages`-page PDF beside read() of its text into the default memory."""
    from memgpt.apps.documents import DEFAULT_MAX_BYTES
    from memgpt.apps.reading import read
    from memgpt.io.formats import load_document

    path = folder / f"cost-{pages}.pdf"
    make_pdf(path, page_texts(pages, seed=pages, varied=True))
    start = time.perf_counter()
    loaded = load_document(path, DEFAULT_MAX_BYTES)
    extract = time.perf_counter() - start
    start = time.perf_counter()
    state = read(loaded.text)
    reading = time.perf_counter() - start
    return {"pages": pages, "pdf_bytes": path.stat().st_size, "chars": len(loaded.text), "tokens_read": state.tokens_read,
            "extract_s": round(extract, 3), "read_s": round(reading, 2),
            "extract_s_per_100_pages": round(100 * extract / pages, 3), "read_s_per_100_pages": round(100 * reading / pages, 2),
            "extract_share_of_total": round(extract / (extract + reading), 4)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pages", type=int, default=30, help="pages (= facts asked) of the generated documents")
    p.add_argument("--formats", default="pdf,docx,epub,html", help="which of pdf,docx,epub,html to ask")
    p.add_argument("--cost-pages", default="100,300", help="PDF sizes for the extraction cost ('' to skip)")
    p.add_argument("--out", type=Path, default=RESULTS / "formats.json")
    args = p.parse_args(argv)
    if not 1 <= args.pages <= 400:
        p.error("--pages must be from 1 to 400")
    formats = [f for f in args.formats.split(",") if f]
    if set(formats) - {"pdf", "docx", "epub", "html"}:
        p.error("--formats: choose from pdf,docx,epub,html")
    from naturalqa import code_commit

    from memgpt.io.atomic import write_text_atomic

    commit = code_commit(ROOT)  # the code measured, before anything changes meanwhile
    pages = page_texts(args.pages)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for fmt in formats:
            path = folder / f"facts.{fmt}"
            if fmt == "pdf":
                where, key = make_pdf(path, pages), "page"
            else:
                {"docx": make_docx, "epub": make_epub, "html": make_html}[fmt](path, pages)
                where, key = [f"Chapter {i + 1}" for i in range(len(pages))], "heading"
            results[fmt] = ask_facts(path, pages, where, key)
            r = results[fmt]
            print(f"{fmt}: {r['hits']}/{r['questions']} (answer {r['answer_right']:.0%}, citation {r['cite_right']:.0%}) "
                  f"in {r['seconds']:.0f} s", flush=True)
        cost = [extraction_cost(folder, int(n)) for n in args.cost_pages.split(",") if n]
    payload = {"date": datetime.date.today().isoformat(), "commit": commit, "cpu": cpu_model(),
               "command": "python " + " ".join(shlex.quote(a) for a in [str(Path(sys.argv[0]))] + (argv if argv is not None else sys.argv[1:])),
               "pages": args.pages, "memory": "default (retrieval)", "model": "default (SmolLM2-135M-Instruct)",
               "asked": results, "extraction": cost}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps(payload, indent=1, ensure_ascii=False))

    print(f"\n{'format':<8}{'hits':>8}{'accuracy':>10}{'answer':>9}{'cited':>8}{'seconds':>9}")
    for fmt, r in results.items():
        print(f"{fmt:<8}{r['hits']:>5}/{r['questions']:<2}{r['accuracy']:>10.1%}{r['answer_right']:>9.1%}"
              f"{r['cite_right']:>8.1%}{r['seconds']:>9.0f}")
    if cost:
        print(f"\n{'pages':>6}{'extract s':>11}{'read s':>9}{'extract s/100p':>16}{'read s/100p':>13}")
        for c in cost:
            print(f"{c['pages']:>6}{c['extract_s']:>11.2f}{c['read_s']:>9.1f}{c['extract_s_per_100_pages']:>16.2f}"
                  f"{c['read_s_per_100_pages']:>13.1f}")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
