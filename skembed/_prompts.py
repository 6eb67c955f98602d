"""Prompts: the text put before every input, chosen as ``SentenceTransformer.encode`` does."""

from __future__ import annotations


def resolve_prompt(prompt, prompt_name, prompts: dict, default_prompt_name) -> str | None:
    """The text put before every input, as ``SentenceTransformer.encode`` chooses it.

    ``prompt`` wins, then the model's prompt named ``prompt_name``, then the
    model's ``default_prompt_name``; an empty string means no prompt.

    >>> resolve_prompt(None, None, {"query": "query: "}, "query")
    'query: '
    >>> resolve_prompt("", None, {"query": "query: "}, "query")
    ''
    """
    if prompt is not None:
        if prompt_name is not None:
            raise ValueError(
                f"Give prompt or prompt_name, not both (got prompt={prompt!r} and "
                f"prompt_name={prompt_name!r})."
            )
        return prompt
    if prompt_name is not None:
        if prompt_name not in prompts:
            known = sorted(prompts) or "none"
            raise ValueError(f"prompt_name={prompt_name!r} is not a prompt of this model; "
                             f"its prompts are {known}.")
        return prompts[prompt_name]
    if default_prompt_name is not None:
        return prompts.get(default_prompt_name)
    return None


def saved_prompts(saved: dict | None) -> dict:
    """The prompts ``SentenceTransformer`` gives a model that saved ``saved``.

    It starts from its class defaults (``query`` and ``document``, empty), so
    that ``prompt_name="query"`` works on every model.
    """
    from sentence_transformers import SentenceTransformer

    prompts = dict(getattr(SentenceTransformer, "_default_prompts", {}))
    prompts.update(saved or {})
    return {name: "" if text is None else text for name, text in prompts.items()}
