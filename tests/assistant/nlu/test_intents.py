"""The intent classifier's direct scoring matches the fitted scikit-learn pipeline."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from assistant.nlu.intents import IntentClassifier, load_utterances, normalise


@pytest.fixture(scope="module")
def classifier() -> IntentClassifier:
    return IntentClassifier()


ODD_TEXTS = [
    "",
    "zzzz qqqq",
    "1234 5678",
    "कल कौन से स्टोर को कॉल करूं",
    "sharma  store ka UDHAAR kitna hai??",
    "outstanding outstanding outstanding for Rajesh Kirana Bhandar",
    "a",
]


def test_direct_margins_equal_the_pipeline(classifier: IntentClassifier) -> None:
    texts = [text for text, _ in load_utterances()] + [normalise(t) for t in ODD_TEXTS]
    expected = classifier.pipeline.decision_function(texts)
    got = np.vstack([classifier.margins(text) for text in texts])
    assert classifier._scorer() is not None
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)


def test_classify_reads_the_same_after_a_pickle_round_trip(classifier: IntentClassifier) -> None:
    before = [classifier.classify(t) for t in ODD_TEXTS + ["how much does sharma store owe"]]
    restored = pickle.loads(pickle.dumps(classifier))
    assert "_fast" not in restored.__dict__
    after = [restored.classify(t) for t in ODD_TEXTS + ["how much does sharma store owe"]]
    assert after == before
    assert before[-1].intent == "outstanding"
