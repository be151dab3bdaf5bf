"""OpenAI's ``text_similarity`` grader: a similarity metric between the answer and the reference, in [0, 1].

Every metric comes from a library: ``fuzzy_match`` is rapidfuzz's ``fuzz.ratio``; ``bleu``, ``chrf`` and ``chrf_pp``
(chrF++) are sacrebleu's sentence scores; ``rouge_1`` … ``rouge_5`` and ``rouge_l`` are rouge-score's F-measures
(its tokenizer keeps ASCII letters and digits only); ``gleu`` and ``meteor`` are nltk's, on ``wordpunct_tokenize``
tokens. METEOR uses WordNet synonyms when nltk's WordNet corpus is installed (``nltk.download("wordnet")``) and
otherwise only its exact and stem matching stages (no network is reached for it). ``cosine`` (OpenAI's embedding
metric) is refused: the gateway serves no embeddings.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, ClassVar

import nltk
import sacrebleu
from nltk.tokenize import wordpunct_tokenize
from nltk.translate.gleu_score import sentence_gleu
from nltk.translate.meteor_score import meteor_score
from rapidfuzz import fuzz
from rouge_score import rouge_scorer

from tunery.errors import InvalidArgument
from tunery_evaluator.graders.base import Answer, Grader, GraderContext, GradeResult, Item
from tunery_evaluator.graders.config import THRESHOLD, check_config, pass_threshold
from tunery_evaluator.graders.templates import MissingField, Template

Metric = Callable[[str, str], float]
"""(answer, reference) -> score in [0, 1]."""


def _rouge(kind: str) -> Metric:
    scorer = rouge_scorer.RougeScorer([kind])
    return lambda hyp, ref: float(scorer.score(ref, hyp)[kind].fmeasure)


class _NoSynonyms:
    """Stands in for nltk's WordNet reader when its corpus is not installed: no synonym matches."""

    @staticmethod
    def synsets(word: str) -> list[Any]:
        return []


@cache
def _wordnet() -> Any:
    try:
        nltk.data.find("corpora/wordnet.zip")
    except LookupError:
        try:
            nltk.data.find("corpora/wordnet")
        except LookupError:
            return _NoSynonyms()
    from nltk.corpus import wordnet

    return wordnet


def _meteor(hyp: str, ref: str) -> float:
    return float(meteor_score([wordpunct_tokenize(ref)], wordpunct_tokenize(hyp), wordnet=_wordnet()))


METRICS: dict[str, Metric] = {
    "fuzzy_match": lambda hyp, ref: fuzz.ratio(hyp, ref) / 100.0,
    "bleu": lambda hyp, ref: sacrebleu.sentence_bleu(hyp, [ref]).score / 100.0,
    "chrf": lambda hyp, ref: sacrebleu.sentence_chrf(hyp, [ref]).score / 100.0,
    "chrf_pp": lambda hyp, ref: sacrebleu.sentence_chrf(hyp, [ref], word_order=2).score / 100.0,
    "gleu": lambda hyp, ref: float(sentence_gleu([wordpunct_tokenize(ref)], wordpunct_tokenize(hyp))),
    "meteor": _meteor,
    **{f"rouge_{n}": _rouge(f"rouge{n}") for n in range(1, 6)},
    "rouge_l": _rouge("rougeL"),
}


class TextSimilarityGrader(Grader):
    name: ClassVar[str] = "text_similarity"
    description: ClassVar[str] = ("Similarity of the answer to the reference in [0, 1]: fuzzy_match, bleu, chrf, "
                                  "chrf_pp, gleu, meteor, rouge_1..rouge_5, rouge_l.")
    config_schema: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "evaluation_metric": {"type": "string", "description": "fuzzy_match, bleu, chrf, chrf_pp, gleu, meteor, "
                                                                  "rouge_1 … rouge_5 or rouge_l."},
            "input": {"type": "string", "default": "{{sample.output_text}}"},
            "reference": {"type": "string", "default": "{{item.reference}}"},
            "pass_threshold": THRESHOLD,
        },
        "required": ["evaluation_metric"],
        "additionalProperties": False,
    }
    needs_reference: ClassVar[bool] = True

    def __init__(self, config: dict[str, Any], context: GraderContext) -> None:
        super().__init__(config, context)
        check_config(self.name, self.config_schema, config)
        metric = config["evaluation_metric"]
        if metric == "cosine":
            raise InvalidArgument("text_similarity: evaluation_metric 'cosine' needs embeddings, which the gateway "
                                  f"does not serve; valid: {', '.join(METRICS)}", code="invalid_grader_config",
                                  field="config.evaluation_metric")
        if metric not in METRICS:
            raise InvalidArgument(f"text_similarity: unknown evaluation_metric {metric!r}; valid: "
                                  f"{', '.join(METRICS)}", code="invalid_grader_config",
                                  field="config.evaluation_metric")
        self.metric_name: str = metric
        self.metric = METRICS[metric]
        self.threshold = pass_threshold(config, None)
        self.input = Template.parse(config.get("input", "{{sample.output_text}}"), "config.input", self.name)
        self.reference = Template.parse(config.get("reference", "{{item.reference}}"), "config.reference",
                                        self.name)

    async def grade(self, item: Item, answer: Answer) -> GradeResult:
        if self.reference.uses_reference and not item.reference:
            return GradeResult(error="no_reference", error_message="the example has no reference answer")
        try:
            hyp = self.input.render(item, {"sample": answer})
            ref = self.reference.render(item, {"sample": answer})
        except MissingField as err:
            return GradeResult(error="missing_field", error_message=str(err))
        score = min(1.0, max(0.0, self.metric(hyp, ref)))
        passed = None if self.threshold is None else score >= self.threshold
        return GradeResult(score=score, passed=passed, label=self.metric_name)
