"""Intent classification for the offline planner.

scikit-learn over the utterances in `prompts/intents/*.yaml`: TF-IDF over character n-grams
(robust to misspellings and Hinglish spelling variants) joined with word n-grams, and a linear
SVM (as accurate as logistic regression here and ten times faster to fit). A softmax over the
SVM's margins gives the confidence that tells the planner when to ask instead of guess.
Fitting takes a couple of seconds; the fitted model is cached per process and on disk under
`MANGALM_HOME/models`, keyed by a hash of the utterance files.

Scoring one message through the fitted pipeline costs about 1.5 ms, nearly all of it
scikit-learn's per-call input validation and the feature union's job dispatch; every turn
classifies at least once. `classify` therefore computes the same margins directly from the
fitted vocabularies, idf weights and SVM coefficients (`_LinearScorer`, a few dozen
microseconds); the tests check it against `Pipeline.decision_function` on every utterance.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from itertools import chain, repeat
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import yaml
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

INTENTS_DIR = Path(__file__).resolve().parents[2] / "prompts" / "intents"
# Softmax temperature over SVM margins: a margin lead of 0.5 reads as about 90% sure.
MARGIN_SCALE = 5.0


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


def _counter(vectorizer: TfidfVectorizer) -> Callable[[str], Counter[int]]:
    """The counts of a text's n-grams in `vectorizer`'s vocabulary, by column, in the order
    they first occur (as scikit-learn counts them), with its own analyzer."""
    analyzer = vectorizer.build_analyzer()
    vocabulary: dict[str, int] = vectorizer.vocabulary_

    def count(text: str) -> Counter[int]:
        # Counted and looked up by C loops (Counter, map): this runs for every message.
        grams = Counter(analyzer(text))
        columns = map(vocabulary.get, grams, repeat(-1))
        return Counter(
            {column: n for column, n in zip(columns, grams.values(), strict=True) if column >= 0}
        )

    return count


def _word_char_counter(vectorizer: TfidfVectorizer) -> Callable[[str], Counter[int]] | None:
    """`_counter` for a `char_wb` vectorizer, whose n-grams never cross a word: each word's
    columns are worked out once (words repeat from message to message) by scikit-learn's
    definition (`_char_wb_ngrams`: the word padded with a space each side, n-grams of every
    length in the range, a word shorter than n once). None for any other vectorizer."""
    if (
        vectorizer.analyzer != "char_wb"
        or vectorizer.input != "content"
        or vectorizer.preprocessor is not None
        or vectorizer.strip_accents is not None
        or not vectorizer.lowercase
    ):
        return None
    low, high = vectorizer.ngram_range
    vocabulary: dict[str, int] = vectorizer.vocabulary_

    @lru_cache(maxsize=65536)
    def columns(word: str) -> tuple[int, ...]:
        padded = f" {word} "
        found: list[int] = []
        for n in range(low, high + 1):
            for start in range(max(len(padded) - n, 0) + 1):
                column = vocabulary.get(padded[start : start + n])
                if column is not None:
                    found.append(column)
            if len(padded) <= n:  # a short word (shorter than n) counts once
                break
        return tuple(found)

    def count(text: str) -> Counter[int]:
        return Counter(chain.from_iterable(map(columns, text.lower().split())))

    return count


class _LinearScorer:
    """The fitted pipeline's margins for one text, without scikit-learn's per-call overhead.

    Each `TfidfVectorizer` of the feature union is applied as scikit-learn defines it (its own
    analyzer, counts over the fitted vocabulary, `1 + log(tf)` when sublinear, times idf, L2
    norm per vectorizer); the union concatenates the blocks and `LinearSVC` adds
    `coef_ @ x + intercept_`.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        features: FeatureUnion = pipeline.named_steps["features"]
        model = pipeline.named_steps["model"]
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        coef = np.asarray(model.coef_, dtype=np.float64)
        self.blocks: list[tuple[Callable[[str], Counter[int]], np.ndarray, bool, np.ndarray]] = []
        offset = 0
        for _, vectorizer in features.transformer_list:
            size = len(vectorizer.vocabulary_)
            if vectorizer.norm != "l2" or not vectorizer.use_idf or vectorizer.binary:
                raise ValueError("the fast scorer supports L2-normalised idf weighting only")
            self.blocks.append(
                (
                    _word_char_counter(vectorizer) or _counter(vectorizer),
                    np.asarray(vectorizer.idf_, dtype=np.float64),
                    bool(vectorizer.sublinear_tf),
                    np.ascontiguousarray(coef[:, offset : offset + size].T),
                )
            )
            offset += size
        if offset != coef.shape[1]:
            raise ValueError("the feature union and the model disagree on the feature count")

    def margins(self, text: str) -> np.ndarray:
        out = self.intercept.copy()
        for count, idf, sublinear, weights in self.blocks:
            counts = count(text)
            if not counts:
                continue
            columns = np.fromiter(counts.keys(), dtype=np.intp, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
            if sublinear:
                tf = np.log(tf) + 1.0
            values = tf * idf[columns]
            norm = float(np.sqrt(values @ values))
            if norm > 0:
                out += (values / norm) @ weights[columns]
        return out


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
                    TfidfVectorizer(
                        analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2
                    ),
                ),
                ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ]
        )
        self.pipeline = Pipeline([("features", features), ("model", LinearSVC(C=0.5))])
        self.pipeline.fit(texts, labels)
        self.intents: list[str] = [str(c) for c in self.pipeline.classes_]

    def _scorer(self) -> _LinearScorer | None:
        # Built on first use (a classifier loaded from the disk cache has none yet); None
        # when the fitted model is not the multi-class linear one this file fits.
        if "_fast" not in self.__dict__:
            try:
                self._fast: _LinearScorer | None = (
                    _LinearScorer(self.pipeline) if len(self.intents) > 2 else None
                )
            except (AttributeError, KeyError, ValueError):
                self._fast = None
        return self._fast

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_fast", None)  # rebuilt from the pipeline after loading
        return state

    def margins(self, text: str) -> np.ndarray:
        """The SVM's margin of every intent (in `self.intents` order) for normalised `text`."""
        scorer = self._scorer()
        if scorer is not None:
            return scorer.margins(text)
        return np.asarray(self.pipeline.decision_function([text])[0], dtype=np.float64)

    def classify(self, text: str) -> IntentGuess:
        """The intent of `text` with its probability and the next two."""
        margins = self.margins(normalise(text))
        scaled = np.exp((margins - margins.max()) * MARGIN_SCALE)
        probabilities = scaled / scaled.sum()
        order = np.argsort(probabilities)[::-1]
        ranked = [(self.intents[i], float(probabilities[i])) for i in order[:3]]
        return IntentGuess(ranked[0][0], ranked[0][1], ranked[1:])


_lock = threading.Lock()
_classifier: IntentClassifier | None = None


def utterances_hash(directory: Path = INTENTS_DIR) -> str:
    """A hash of the utterance files, naming the model fitted on them."""
    digest = hashlib.sha256()
    for path in sorted(directory.glob("*.yaml")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def get_classifier(cache_dir: Path | None = None) -> IntentClassifier:
    """The process-wide classifier: loaded from the disk cache, or fitted and cached."""
    global _classifier
    with _lock:
        if _classifier is not None:
            return _classifier
        if cache_dir is None:
            from tools.settings import get_settings

            cache_dir = get_settings().home / "models"
        path = cache_dir / f"intents-{utterances_hash()}.joblib"
        if path.exists():
            try:
                _classifier = joblib.load(path)
                return _classifier
            except Exception:  # a corrupt or incompatible cache is refitted
                path.unlink(missing_ok=True)
        _classifier = IntentClassifier()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            joblib.dump(_classifier, tmp)
            tmp.replace(path)
        except OSError:
            pass  # the cache is an optimisation only
        return _classifier
