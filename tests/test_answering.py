"""The grounded answer path (`memgpt.memories.answering`): answer types, numbers, candidate spans,
verification and abstention; then the examples of issue 22 on the real default model (short documents,
seconds each), and the kv memory-file example through the CLI."""

import json

import pytest
from test_cli import run_in_process

from memgpt.apps import ask, get_engine
from memgpt.memories.abstention import NOT_IN_DOCUMENT
from memgpt.memories.answering import (AGE, AMOUNT, COLOUR, DATE, GROUP, KINSHIP, NAME, NUMBER, OTHER, PERSON, PLACE,
                                       ROLE, answer_type, asked_noun, candidates, chain_cover, find_numbers,
                                       grounded_answer, parse_number, relevant, supports, verbatim)
from memgpt.io.spans import Span, reference_entry, reference_sentences
from memgpt.memories.base import Answer

INN = "The innkeeper of the Blue Heron, a widow named Greta Solberg, charged travellers nine pennies a night."
SCHOOL = "Tobias Merrow, the village schoolmaster, had taught there for thirty-one winters."
ANNA = "Anna lives in Oslo. Bob lives in Rome."


@pytest.mark.parametrize("question,kind", [
    ("Who was the captain of the Orinda?", PERSON),
    ("To whom did Leopold Marwick leave his house?", PERSON),
    ("Whose press made the best cider in Cradbury?", PERSON),
    ("Where does Anna live?", PLACE),
    ("In which town did Wilfred Gamage live?", PLACE),
    ("When was the chapel consecrated?", DATE),
    ("In what year did the first train arrive?", DATE),
    ("How many winters had Tobias Merrow taught?", NUMBER),
    ("How tall was the tower?", NUMBER),
    ("How long did the carters spend on the pass?", NUMBER),
    ("What was the population of Thornbury Hythe?", NUMBER),
    ("How old was Greta Solberg?", AGE),
    ("How much did the innkeeper of the Blue Heron charge?", AMOUNT),
    ("What did one night's stay at the Gilded Pike cost?", AMOUNT),
    ("What price did a heifer bring at the fair?", AMOUNT),
    ("What colour was the schoolmaster's coat?", COLOUR),
    ("In what color of leather were the books bound?", COLOUR),
    ("What was the name of Jerusha Moyle's father?", NAME),
    ("What was Rosamund Kell's trade?", ROLE),
    ("What rank did Felix Garrow reach on the Lucky Hesper?", ROLE),
    ("Which relative brought up Theodora Quince?", KINSHIP),
    ("How did Odile Fenwright make her living?", OTHER),
    ("What is the capital of Angola?", PLACE),
    ("What was the largest city of the province?", PLACE),
    ("What was the nationality of Aristotle?", GROUP),
    ("What is the official language of Angola?", GROUP),
    ("What did the town council decide?", OTHER),
])
def test_answer_type(question, kind):
    assert answer_type(question) == kind


@pytest.mark.parametrize("text,value", [
    ("thirty-one", 31), ("four hundred and twelve", 412), ("1,250", 1250), ("$240", 240), ("one hundred and seventeen", 117),
    ("twenty", 20), ("a hundred", 100), ("two dozen", 24), ("3.5", 3.5), ("seven thousand three hundred", 7300),
    ("twice", 2),
])
def test_numbers_in_digits_and_words(text, value):
    assert parse_number(text) == value


def test_numbers_found_in_a_sentence_with_their_values_and_money():
    found = find_numbers("He paid $240 for 1,250 sheep, four hundred and twelve goats and nine pennies a night.")
    assert [(n.value, n.currency) for n in found] == [(240, True), (1250, False), (412, False), (9, True)]
    assert [n.value for n in find_numbers("He had gone bankrupt twice.")] == [2]
    assert parse_number("the ferry") is None and find_numbers("A farthing for a goat and a penny for a man.")[1].value == 1


def test_candidates_by_type():
    def texts(kind, sentences, question):
        return {c.text for c in candidates(kind, sentences, question)}

    assert texts(AMOUNT, [INN], "How much did the innkeeper of the Blue Heron charge?") == {"nine pennies"}
    assert texts(AGE, [INN], "How old was Greta Solberg?") == set()  # nine pennies is money, not an age
    assert texts(NUMBER, [SCHOOL], "How many winters had Tobias Merrow taught?") >= {"thirty-one", "thirty-one winters"}
    assert texts(COLOUR, [SCHOOL], "What colour was the schoolmaster's coat?") == set()
    assert texts(COLOUR, ["They painted the hull a sober slate grey."], "What colour was the hull?") >= {"slate grey", "grey"}
    assert texts(PLACE, ANNA.split(". "), "Where does Anna live?") == {"Oslo", "Rome"}  # not Anna: the question's own name
    assert "Greta Solberg" in texts(PERSON, [INN], "Who kept the Blue Heron?")
    assert "Blue Heron" not in texts(PERSON, [INN], "Who kept the Blue Heron?")
    mill = "Fenella Dunsmore inherited the mill at Crossley Beck from a godmother."
    assert texts(PERSON, [mill], "From whom did Fenella Dunsmore inherit the mill?") == {"a godmother", "godmother"}
    assert texts(DATE, ["The bridge was opened on the eleventh of October, 1884, by a bishop."], "When?") >= {
        "the eleventh of October, 1884"}
    assert texts(DATE, ["The first train reached Glassford Junction in 1889."], "In what year?") == {"1889"}
    assert "Everyone" not in texts(NAME, ["Everyone in Cradbury agreed."], "What was the name?")  # a sentence start
    glover = "Rosamund Kell earned her bread as a glovemaker in the lanes behind the cathedral at Ambrey."
    assert texts(ROLE, [glover], "What was Rosamund Kell's trade?") == {"a glovemaker", "glovemaker"}
    raised = "Theodora Quince was brought up by her grandmother, a lacemaker, in a cottage at Pendle End."
    assert texts(KINSHIP, [raised], "Which relative brought up Theodora Quince?") == {"her grandmother", "grandmother"}


def test_a_place_that_holds_the_subjects_name_is_not_where_the_subject_was():
    born = "Born Joseph Aloysius Dwan in Toronto, Ontario, Canada, Dwan was the younger son of a traveller."
    found = {c.text for c in candidates(PLACE, [born], "Where was Allan Dwan born?")}
    assert "Toronto" in found and not any("Dwan" in c for c in found)


def test_a_free_answer_is_given_in_the_sentence_s_own_words():
    carver = "Augustin Melbry made his living carving figureheads for the shipyards at Porthkennis."
    free = "Augustin Melbry carved a figurehead for the shipyards at Porthkennis"
    assert verbatim(free, carver, "What did Augustin Melbry carve for a living?") == (
        "figureheads for the shipyards at Porthkennis")
    assert verbatim("Yes", "Anna lives in Oslo.", "Does Anna live in Oslo?") is None


@pytest.mark.parametrize("text,entry", [
    ("Arthur Hubscher, Arthur Schopenhauer - Ein Lebensbild (Leipzig: Brockhaus, 1938).", True),
    ("Connes, A. Noncommutative Geometry, Academic Press, 1994, ISBN 978-0-12-185860-5.", True),
    ("Alaska is large (the state: huge, 1959).", False),
    ("He was born in Ulm (Germany) in 1879.", False),
])
def test_reference_entries(text, entry):
    assert reference_entry(text) is entry


def test_reference_sections_run_to_the_next_heading_above_prose():
    texts = ["Lincoln was born in a log cabin in Kentucky in 1809 and grew up on the frontier.", "See also.",
             "List of Presidents of the United States", "Bibliography.", "Biographies.", "Donald, David Herbert.",
             "Lincoln (1995), a life in full.", "of detailed biography\nExternal links.",
             "Media coverage\nOther\nAbraham Lincoln: A Resource Guide from the Library of Congress"]
    assert reference_sentences(texts) == set(range(1, 9))
    prose = ["Notes.", "Clara Barton.", "Early life.", "She was born on a farm in Oxford, Massachusetts, the youngest of five."]
    assert reference_sentences(prose) == {0, 1}


def test_a_question_no_sentence_speaks_of_is_declined_without_names_too():
    window = "River winter ledger the merchant council counted lanterns."
    g = grounded_answer(None, "Who built the lighthouse?", [Span(0, len(window), window)], "the merchant")
    assert g.how == "abstain" and g.quote is None


def test_a_bibliography_entry_is_no_evidence_for_an_answer():
    bib = "Arthur Hubscher, Arthur Schopenhauer - Ein Lebensbild (Leipzig: Brockhaus, 1938)."
    g = grounded_answer(None, "Where was Arthur Schopenhauer born?", [Span(0, len(bib), bib)], "Leipzig")
    assert g.how == "abstain" and g.quote is None


@pytest.mark.parametrize("question,noun", [
    ("What is the name of Agnetha Skarr's husband?", "husban"), ("What was the name of the hermit of Brockhole Wood?", "hermit"),
    ("Who was the captain of the Orinda?", "captai"), ("What is the name of the keeper's cat?", "cat"),
    ("Who was the only man to defeat the champion?", None), ("Who kept the Blue Heron?", None),
])
def test_the_noun_whose_name_is_asked(question, noun):
    assert asked_noun(question) == noun


def test_relevant_sentences_follow_the_question_and_its_links():
    assert relevant("Where does Anna live?", ["Anna lives in Oslo.", "Bob lives in Rome."]) == ([0], [], True)
    chain = ["The miller of Fenwick Cross was a tall man called Ivo Brandt.", "The weather was fine.",
             "The miller's brother ran a tannery in the port of Saltmouth."]
    assert relevant("What business did Ivo Brandt's brother run?", chain) == ([0], [2], True)  # linked by "the miller"
    assert relevant("Who was the father of Cosmo Tilbrook?", chain) == ([], [], False)  # never named
    painted = ["The apothecary had his door painted a vivid saffron yellow.", "They painted the hull of the Corabel grey."]
    assert relevant("What colour was the Corabel's hull?", painted) == ([1], [], True)  # a shared verb is no link
    band = ["The little steamer Orinda crossed twice each month.", "Old Nicodemus Farr played at Little Haddow."]
    assert relevant("Who was the captain of the Orinda?", band) == ([0], [], True)  # "Little Haddow" is not "little"


def test_a_linked_sentence_that_adds_what_the_question_asks_answers_it():
    """The named sentence introduces the man; the sentence linked to it by "the Hollin Vale blacksmith" holds
    the question's "married" ("marry"): it answers, and its words shared with the first are the link."""
    chain = ["The blacksmith of Hollin Vale was a quiet man named Amos Wray.", "The weather was mild that year.",
             "The Hollin Vale blacksmith had married a widow from the coast."]
    question = "Whom did Amos Wray marry?"
    direct, linked, _ = relevant(question, chain)
    assert (direct, linked) == ([0], [2])
    assert chain_cover(question, chain, direct, linked) == ({0: 2, 2: 3}, {2})
    assert chain_cover("How tall was Amos Wray?", chain, direct, linked)[1] == set()  # adds nothing asked


def test_verification_rejects_a_fabricated_number_or_name():
    question = "How many winters had Tobias Merrow taught?"
    found = candidates(NUMBER, [SCHOOL], question)
    assert supports("He taught for thirty-one winters.", question, SCHOOL, SCHOOL, NUMBER, found)
    assert supports("31 winters", question, SCHOOL, SCHOOL, NUMBER, found)  # numbers compare by value
    assert not supports("He taught for 32 winters.", question, SCHOOL, SCHOOL, NUMBER, found)
    assert not supports("3 winters", question, SCHOOL, SCHOOL, NUMBER, found)
    q = "Where does Anna live?"
    anna, bob = ANNA.split(". ")
    assert not supports("Anna lives in Rome.", q, anna, ANNA, PLACE, candidates(PLACE, [anna], q))
    assert not supports("Anna lives in Paris.", q, anna, ANNA, PLACE, candidates(PLACE, [anna], q))
    assert supports("Anna lives in Oslo.", q, anna, ANNA, PLACE, candidates(PLACE, [anna], q))
    assert not supports("Greta Solberg was 18 years old.", "How old was Greta Solberg?", INN, INN, AGE, [])


# -- the real default model ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine():
    return get_engine("default", "auto", 1024)


def test_real_model_answers_from_the_sentence_or_abstains(engine):
    questions = ["How old was Greta Solberg?", "How much did the innkeeper of the Blue Heron charge?"]
    old, price = ask(INN, questions, engine=engine)
    assert isinstance(old, Answer) and old.abstained and old.text == NOT_IN_DOCUMENT and old.quote is None
    assert "nine pennies" in price.text and price.quote.text == INN and not price.abstained
    coat, winters = ask(SCHOOL, ["What colour was the schoolmaster's coat?", "How many winters had Tobias Merrow taught?"],
                        engine=engine)
    assert coat.abstained and coat.text == NOT_IN_DOCUMENT
    assert parse_number(winters.text.split()[0]) == 31 or "31" in winters.text, winters
    assert winters.quote == winters.citations[0] and SCHOOL[winters.quote.start : winters.quote.end] == winters.quote.text


def test_real_model_answers_a_date_in_full(engine):
    doc = "The new bridge at Culvercombe was opened on the eleventh of October, 1884, by a bishop."
    answer = ask(doc, "On what date was the Culvercombe bridge opened?", engine=engine)
    assert "eleventh of October, 1884" in answer.text and answer.quote.text == doc


def test_real_model_abstains_when_no_sentence_speaks_of_what_is_named(engine):
    doc = "Agnetha Skarr works as a weaver in the town of Brodny. She has two sons and a cow."
    assert ask(doc, "What is the name of Agnetha Skarr's husband?", engine=engine).abstained  # not "Brodny"


def test_real_model_takes_the_span_of_the_sentence_that_holds_the_question(engine):
    """Two sentences of one type: "first" and "built" pick the sentence, not the model's taste in names."""
    doc = ("The lighthouse on Gull Island was built in 1872 by the engineer Margaret Hale. "
           "The first keeper, Thomas Reed, kept a logbook of every ship that passed the island. "
           "The last keeper, John Pike, left the island in 1987, when the light became automatic. "
           "Today the lighthouse is run by the Gull Island Trust, which opens it to visitors every summer.")
    first, last, builder = ask(doc, ["Who was the first keeper?", "Who was the last keeper?", "Who built the lighthouse?"],
                               engine=engine)
    assert "Thomas Reed" in first.text and "John Pike" in last.text and "Margaret Hale" in builder.text, (first, last, builder)


def test_real_model_answers_with_the_candidate_it_ranks_best_not_the_longest(engine):
    """The model's free answer copies the whole sentence: it names two places, and the better one stands."""
    doc = "Angola's capital, Luanda, lies on the Atlantic coast in the northwest of the country."
    answer = ask(doc, "What is the capital of Angola?", engine=engine)
    assert answer.text == "Luanda" and answer.quote.text == doc, answer


def test_real_model_two_sentence_document_both_ways(engine):
    anna, bob = ask(ANNA, ["Where does Anna live?", "Where does Bob live?"], engine=engine)
    assert "Oslo" in anna.text and "Rome" not in anna.text and anna.quote.text == "Anna lives in Oslo."
    assert "Rome" in bob.text and "Oslo" not in bob.text and bob.quote.text == "Bob lives in Rome."
    assert json.loads(json.dumps(anna.to_dict()))["quote"] == {"start": 0, "end": 19, "text": "Anna lives in Oslo."}


def test_cli_ask_text_prints_the_quote_under_the_answer(capsys):
    proc = run_in_process(capsys, "ask", "--text", ANNA, "Where does Anna live?", "--window", "512", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    answer, quote = proc.stdout.strip().splitlines()
    assert "Oslo" in answer and quote.strip() == "[0-19] Anna lives in Oslo."
    quiet = run_in_process(capsys, "ask", "--text", ANNA, "Where does Anna live?", "--quiet", "--window", "512", "--no-progress")
    assert quiet.returncode == 0 and len(quiet.stdout.strip().splitlines()) == 1


def test_cli_kv_memory_file_answers_with_a_quote(tmp_path, capsys):
    """The README's example: `memgpt read doc.txt --memory kv -o book.mem && memgpt ask book.mem "What is the pass key?"`."""
    filler = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
    doc = tmp_path / "doc.txt"
    doc.write_text(filler * 10 + "The pass key is 68231. Remember it. 68231 is the pass key. " + filler * 30)
    mem = tmp_path / "book.mem"
    proc = run_in_process(capsys, "read", str(doc), "--memory", "kv", "-o", str(mem), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = run_in_process(capsys, "ask", str(mem), "What is the pass key?", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "68231" in lines[0] and "68231" in lines[1] and lines[1].strip().startswith("[")
    out = json.loads(run_in_process(capsys, "ask", str(mem), "What is the pass key?", "--json", "--no-progress").stdout)
    assert "68231" in out["answers"][0]["answer"] and "68231" in out["answers"][0]["quote"]["text"]


def test_real_model_answers_chinese_text_from_its_sentences(engine):
    doc = "灯塔看守人的猫叫胡椒。灯塔看守人每晚写日志。"
    answer = ask(doc, "灯塔看守人的猫叫什么？", engine=engine)
    assert isinstance(answer, Answer) and "\ufffd" not in answer.text
    assert answer.abstained or (answer.quote is not None and doc[answer.quote.start : answer.quote.end] == answer.quote.text)
    assert not answer.abstained and "胡椒" in answer.text, answer
