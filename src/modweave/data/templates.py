"""Prompt templates as data: one table per task, keyed by modality.

QA wraps a question (``"Question: {} Answer:"``), captioning has a fixed instruction per modality,
classification ranks candidate texts built from a per-modality pattern (``"an audio of {}"``).
"""

from __future__ import annotations

import dataclasses

TASKS = ("qa", "caption", "cls")


@dataclasses.dataclass(frozen=True)
class Template:
    """Prompt pattern for one (modality, task); ``{}`` is the question (qa) or the label (cls candidates)."""

    prompt: str
    candidate: str = "{}"


QA = Template("Question: {} Answer:")

CAPTION: dict[str, Template] = {
    "image": Template("A short image caption:"),
    "video": Template("A short video caption:"),
    "audio": Template("A short audio caption:"),
    "depth": Template("A short caption of the depth map:"),
    "point_cloud": Template("A short caption of the 3D shape:"),
    "text": Template("A short caption:"),
}

CLS: dict[str, Template] = {
    "image": Template("A photo of", "a photo of {}"),
    "video": Template("A video of", "a video of {}"),
    "audio": Template("An audio of", "an audio of {}"),
    "depth": Template("A depth map of", "a depth map of {}"),
    "point_cloud": Template("A point cloud of", "a point cloud of {}"),
    "text": Template("", "{}"),
}


def get_template(modality: str, task: str) -> Template:
    """The template of ``(modality, task)``; unknown modalities fall back to generic wording."""
    if task == "qa":
        return QA
    if task == "caption":
        return CAPTION.get(modality, Template("A short caption:"))
    if task == "cls":
        return CLS.get(modality, Template("", "{}"))
    raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})")


def render_prompt(modality: str, task: str, question: str | None = None) -> str:
    """Full prompt text of a record, e.g. ``render_prompt("video", "qa", "Which way?")``."""
    tpl = get_template(modality, task)
    if task == "qa":
        if not question:
            raise ValueError("a qa prompt needs a question")
        return tpl.prompt.format(question.strip())
    return tpl.prompt


def candidate_texts(modality: str, labels: list[str]) -> list[str]:
    """Texts to rank for classification, e.g. ``["an audio of dog", ...]``."""
    tpl = get_template(modality, "cls")
    return [tpl.candidate.format(label) for label in labels]


# MCL-Digits questions: the shared concept (which digit) and each modality's own attribute.
DIGIT_QUESTIONS: dict[str, str] = {
    "image": "What digit is shown?",
    "video": "What digit is moving?",
    "audio": "What digit is played?",
    "depth": "What digit is in the depth map?",
    "point_cloud": "What digit is the shape?",
}
ATTRIBUTE_QUESTIONS: dict[str, str] = {
    "position": "Which way is the digit shifted?",  # image: teaches the video direction words
    "brightness": "Is the brightness high or low?",  # image: teaches the audio pitch words
    "size": "Is the digit near or far?",  # image: teaches the depth words (big = near)
    "rotation": "Which way is the digit turned?",  # image and point cloud
    "direction": "Which way does the digit move?",  # video
    "pitch": "Is the pitch high or low?",  # audio
    "distance": "Is the digit near or far?",  # depth
}
TEXT_QUESTIONS: dict[str, str] = {
    "spell": "Spell {}.",
    "after": "What number comes after {}?",
    "before": "What number comes before {}?",
}
