"""Windows of a long text's tokens: what ``long_texts="chunk"`` embeds, and how they are weighed.

A text's token ids, as the model's tokenizer gives them for the whole text
(special tokens, then the prompt's tokens and the text's), are cut into
windows of at most ``max_length`` tokens: each window is the special tokens
around the prompt's tokens and a slice of the text's tokens, and consecutive
slices share ``overlap`` tokens. The prompt's tokens are those the whole
text starts with and the prompt alone gives (a tokenizer may join the
prompt's last piece to the text's first word), so the first window is the
text's usual first window, token for token. A text that fits ``max_length``
is one window: exactly its usual tokens. Knows nothing of models: it works
on ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Tokens that consecutive windows share by default: none (on the Spanish Fake News
#: Corpus, overlaps of 0 to 64 tokens gave the same accuracy; 0 makes the fewest windows).
WINDOW_OVERLAP = 0


@dataclass(frozen=True)
class WindowPlan:
    """How the tokens of one model's texts are cut into windows.

    Attributes
    ----------
    prefix, suffix : tuple of int
        The special tokens the tokenizer puts around a text.
    prompt_ids : tuple of int
        The prompt's tokens, as the tokenizer gives them for the prompt alone.
    max_length : int
        Tokens a window holds at most, special tokens and prompt included.
    overlap : int
        Text tokens that consecutive windows share.
    max_windows : int or None
        Windows kept per text at most (the rest is left out).
    """

    prefix: tuple
    suffix: tuple
    prompt_ids: tuple
    max_length: int
    overlap: int
    max_windows: int | None = None

    def text_tokens(self, prompt_tokens: int | None = None) -> int:
        """Text tokens per window, after ``prompt_tokens`` (default: the whole prompt's)."""
        if prompt_tokens is None:
            prompt_tokens = len(self.prompt_ids)
        return self.max_length - len(self.prefix) - len(self.suffix) - prompt_tokens

    def prompt_tokens(self, ids) -> int:
        """How many of the whole text's ``ids`` (special tokens included) are its prompt's."""
        start = ids[len(self.prefix):len(self.prefix) + len(self.prompt_ids)]
        k = 0
        while k < len(start) and start[k] == self.prompt_ids[k]:
            k += 1
        return k

    def check(self, model_name: str) -> None:
        """A ValueError when no window holds a text token past the overlap."""
        if self.text_tokens() <= self.overlap:
            raise ValueError(
                f"long_texts='chunk' cannot cut texts for model {model_name!r}: a window of "
                f"{self.max_length} tokens holds {self.text_tokens()} text tokens (special tokens "
                f"and prompt aside), not more than window_overlap={self.overlap}. Lower "
                "window_overlap or raise max_seq_length."
            )

    def n_windows(self, n_tokens: int, prompt_tokens: int | None = None) -> int:
        """Windows of a text of ``n_tokens`` tokens (as tokenized whole), before any cap.

        >>> plan = WindowPlan((101,), (102,), (), max_length=6, overlap=1)
        >>> [plan.n_windows(n) for n in (6, 7, 9, 10)]
        [1, 2, 2, 3]
        """
        if n_tokens <= self.max_length:
            return 1
        if prompt_tokens is None:
            prompt_tokens = len(self.prompt_ids)
        size = self.text_tokens(prompt_tokens)
        inner = n_tokens - len(self.prefix) - len(self.suffix) - prompt_tokens
        return 1 + -(-(inner - size) // (size - self.overlap))


@dataclass
class Windows:
    """The rows a chunk of texts becomes: whole texts, and windows of the longer ones.

    Attributes
    ----------
    ids : list of list of int
        Token ids of each row.
    owner : ndarray of int
        The text (position in the chunk) each row belongs to.
    weight : ndarray of float
        Each row's weight in its text's mean: its number of tokens.
    whole : ndarray of bool
        Whether the row is a whole text (its vector is the text's as it is).
    capped : list of int
        Texts with more windows than ``max_windows`` (their end left out).
    """

    ids: list
    owner: np.ndarray
    weight: np.ndarray
    whole: np.ndarray
    capped: list


def cut(token_ids: list, plan: WindowPlan) -> Windows:
    """The rows of texts whose token ids (whole, special tokens included) are ``token_ids``.

    >>> plan = WindowPlan((101,), (102,), (), max_length=5, overlap=1)
    >>> windows = cut([[101, 7, 102], [101, 1, 2, 3, 4, 5, 102]], plan)
    >>> windows.ids
    [[101, 7, 102], [101, 1, 2, 3, 102], [101, 3, 4, 5, 102]]
    >>> windows.owner.tolist(), windows.whole.tolist()
    ([0, 1, 1], [True, False, False])
    """
    prefix, suffix = list(plan.prefix), list(plan.suffix)
    tail = len(suffix)
    rows, owner, whole, capped = [], [], [], []
    for position, ids in enumerate(token_ids):
        if len(ids) <= plan.max_length:
            rows.append(ids)
            owner.append(position)
            whole.append(True)
            continue
        prompt_tokens = plan.prompt_tokens(ids)
        head = len(prefix) + prompt_tokens
        size = plan.text_tokens(prompt_tokens)
        stride = size - plan.overlap
        start_of = prefix + list(ids[len(prefix):head])  # special tokens, then the prompt
        text = ids[head:len(ids) - tail] if tail else ids[head:]
        n_windows = plan.n_windows(len(ids), prompt_tokens)
        if plan.max_windows is not None and n_windows > plan.max_windows:
            n_windows = plan.max_windows
            capped.append(position)
        for k in range(n_windows):
            rows.append(start_of + list(text[k * stride: k * stride + size]) + suffix)
            owner.append(position)
            whole.append(False)
    return Windows(
        ids=rows,
        owner=np.asarray(owner, dtype=np.intp),
        weight=np.fromiter(map(len, rows), dtype=np.float64, count=len(rows)),
        whole=np.asarray(whole, dtype=bool),
        capped=capped,
    )
