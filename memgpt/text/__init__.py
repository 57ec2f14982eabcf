"""Language knowledge from maintained libraries: spaCy pipelines (tokens, lemmas, stop words, entities,
noun chunks, dependency arcs) and text2num (numbers written in words). The package's one tokeniser,
one lemmatizer and one stop list live here."""
