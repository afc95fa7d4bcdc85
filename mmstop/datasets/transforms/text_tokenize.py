# Copyright (c) mmstop contributors. All rights reserved.
"""CLIP BPE tokenisation of captions (``TokenizeText``), with open_clip.

The ids follow the official STOP / CLIP4Clip procedure
(``docs/stop.md#tokenization``)::

    [SOT] + bpe(caption)[:context_length - 2] + [EOT] + zero padding

with SOT = 49406 and EOT = 49407, i.e. an over-long caption keeps its first
``context_length - 2`` BPE tokens and still ends with EOT. STOP uses
``context_length`` 32 for MSR-VTT/VATEX and 64 for ActivityNet/DiDeMo.
open_clip's ``SimpleTokenizer`` computes exactly these ids (ftfy + HTML
unescape, whitespace collapsed, lower case; identical to the official
tokenizer's ``tokenize`` for ordinary text), so the transform calls it and
adds what open_clip does not: input checks, and a count of the captions it
truncated. Nothing depends on the OpenAI ``clip`` git package.

The EOT token has the largest id, so a text encoder finds the EOT position
with ``ids.argmax(dim=-1)`` as CLIP does; do not use ``ids != 0`` as a mask
(BPE id 0 is the token ``!``).

Over-long captions are truncated, never rejected. Each transform instance
counts them and logs a warning with the running count (this process) at the
1st, 10th, 100th, ... truncation; ``results['text_truncated']`` holds the
number truncated in the current sample.
"""
import logging
from typing import Dict, Sequence, Union

import torch
from mmcv.transforms import BaseTransform
from mmengine.logging import print_log

from mmstop.registry import TRANSFORMS


def _build_tokenizer():
    from open_clip.tokenizer import SimpleTokenizer
    return SimpleTokenizer()


@TRANSFORMS.register_module()
class TokenizeText(BaseTransform):
    """Tokenise one caption or a list of captions into CLIP ids.

    Required keys: ``text_key`` (``str`` or a list of ``str``).

    Added keys: ``out_key`` (LongTensor ``[num_captions, context_length]``;
    ``[1, context_length]`` for a single string), ``text_truncated`` (int).

    Args:
        context_length (int): Length of each id row, SOT and EOT included.
            Defaults to 77.
        text_key (str): Key of the caption(s). Defaults to ``'text'``.
        out_key (str): Key of the ids. Defaults to ``'text_ids'``.
    """

    def __init__(self,
                 context_length: int = 77,
                 text_key: str = 'text',
                 out_key: str = 'text_ids') -> None:
        if int(context_length) < 2:
            raise ValueError('context_length must be >= 2 (SOT and EOT), '
                             f'got {context_length}')
        self.context_length = int(context_length)
        self.text_key = text_key
        self.out_key = out_key
        self._tokenizer = None
        self.num_texts = 0
        self.num_truncated = 0
        self._next_report = 1
        self._last_truncated = 0

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = _build_tokenizer()
        return self._tokenizer

    def encode(self,
               texts: Union[str, Sequence[str]],
               context: str = '') -> torch.Tensor:
        """Ids of ``texts`` (see module docstring); counts truncations.

        Args:
            texts (str | Sequence[str]): Caption(s).
            context (str): Where the captions come from, for log messages.
                Defaults to ''.

        Returns:
            torch.Tensor: int64 ``[len(texts), context_length]``.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(
                    f'{context or "TokenizeText"}: caption {i} must be a '
                    f'str, got {type(text).__name__}: {text!r}')
        tok = self.tokenizer
        length = self.context_length
        # open_clip cuts an over-long row at the context length and makes
        # its last id EOT. One more column shows which captions are longer
        # than ours (that column is not padding); cutting those rows the
        # same way gives open_clip's ids for our context length.
        ids = tok(texts, context_length=length + 1)
        cut = ids[:, length] != 0
        ids = ids[:, :length].clone()
        ids[cut, length - 1] = tok.eot_token_id
        for i in cut.nonzero().flatten().tolist():
            self._count_truncation(texts[i], context)
        self.num_texts += len(texts)
        self._last_truncated = int(cut.sum())
        return ids

    def _count_truncation(self, text: str, context: str) -> None:
        self.num_truncated += 1
        if self.num_truncated < self._next_report:
            return
        self._next_report *= 10
        num_bpe = len(self.tokenizer.encode(text))
        shown = text if len(text) <= 80 else text[:77] + '...'
        print_log(
            f'TokenizeText: {self.num_truncated} caption(s) so far in this '
            f'process had more than {self.context_length - 2} BPE tokens '
            f'(context_length={self.context_length}) and were truncated; '
            f'latest: {context + ": " if context else ""}{shown!r} '
            f'({num_bpe} BPE tokens). Next report at '
            f'{self._next_report} truncations.',
            logger='current',
            level=logging.WARNING)

    def transform(self, results: Dict) -> Dict:
        """Add the ids of ``results[text_key]`` to ``results[out_key]``.

        Args:
            results (dict): The result dict.

        Returns:
            dict: The result dict.
        """
        if self.text_key not in results:
            raise KeyError(
                f'TokenizeText needs the caption(s) under {self.text_key!r}; '
                f'available keys: {sorted(results)}')
        context = str(results.get('filename', ''))
        results[self.out_key] = self.encode(results[self.text_key], context)
        results['text_truncated'] = self._last_truncated
        return results

    def __getstate__(self):
        # the BPE tables are rebuilt lazily in each worker
        state = self.__dict__.copy()
        state['_tokenizer'] = None
        return state

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'context_length={self.context_length}, '
                f'text_key={self.text_key!r}, out_key={self.out_key!r})')
