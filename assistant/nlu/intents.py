"""Intent classification for the offline planner.

scikit-learn over the utterances in `prompts/intents/*.yaml`: TF-IDF over character n-grams
(robust to misspellings and Hinglish spelling variants) joined with word n-grams, and a
logistic regression whose probabilities tell the planner when to ask instead of guess.
Training takes about a second; the fitted model is cached per process.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

INTENTS_DIR = Path(__file__).resolve().parents[2] / "prompts" / "intents"


@dataclass(frozen=True)
class IntentGuess:
    """The most likely intent, how sure the model is, and the runners-up."""

    intent: str
    confidence: float
    alternatives: list[tuple[str, float]]


def load_utterances(directory: Path = INTENTS_DIR) -> list[tuple[str, str]]:
    """(text, intent) pairs from every YAML file in `directory`."""
    pairs: list[tuple[str, str]] = []
    for path in sorted(directory.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        intent = data.get("intent") or path.stem
        for example in data.get("examples") or []:
            if isinstance(example, str) and example.strip():
                pairs.append((normalise(example), intent))
    if not pairs:
        raise FileNotFoundError(f"no intent utterances found in {directory}")
    return pairs


def normalise(text: str) -> str:
    """Lower-case, collapse whitespace; keeps digits and letters of any script."""
    return " ".join(text.lower().replace("’", "'").split())


class IntentClassifier:
    """TF-IDF (char + word n-grams) and logistic regression over the intent utterances."""

    def __init__(self, utterances: list[tuple[str, str]] | None = None) -> None:
        data = utterances if utterances is not None else load_utterances()
        texts = [text for text, _ in data]
        labels = [label for _, label in data]
        features = FeatureUnion(
            [
                (
                    "chars",
                    TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                ),
                ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ]
        )
        self.pipeline = Pipeline(
            [("features", features), ("model", LogisticRegression(C=20.0, max_iter=2000))]
        )
        self.pipeline.fit(texts, labels)
        self.intents: list[str] = list(self.pipeline.classes_)

    def classify(self, text: str) -> IntentGuess:
        """The intent of `text` with its probability and the next two."""
        probabilities = self.pipeline.predict_proba([normalise(text)])[0]
        order = np.argsort(probabilities)[::-1]
        ranked = [(self.intents[i], float(probabilities[i])) for i in order[:3]]
        return IntentGuess(ranked[0][0], ranked[0][1], ranked[1:])


_lock = threading.Lock()
_classifier: IntentClassifier | None = None


def get_classifier() -> IntentClassifier:
    """The process-wide classifier, trained on first use."""
    global _classifier
    with _lock:
        if _classifier is None:
            _classifier = IntentClassifier()
        return _classifier
