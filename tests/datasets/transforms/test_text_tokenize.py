# Copyright (c) mmstop contributors. All rights reserved.
import os.path as osp

import pytest
import torch

from mmstop.datasets.transforms import TokenizeText
from mmstop.registry import TRANSFORMS

SOT, EOT = 49406, 49407


@pytest.mark.parity
@pytest.mark.parametrize('name', ['inputs_T4_B2.pt', 'inputs_T12_B3.pt'])
def test_matches_official_ids(stop_parity_dir, name):
    """Golden ids of the official tokenizer ([SOT] + bpe[:30] + [EOT])."""
    golden = torch.load(osp.join(stop_parity_dir, name))
    tok = TokenizeText(context_length=golden['text_ids'].shape[1])
    ids = tok.encode(golden['captions'])
    assert ids.dtype == torch.long
    assert torch.equal(ids, golden['text_ids'].long())


@pytest.mark.parity
def test_official_truncation_keeps_eot_last(stop_parity_dir):
    golden = torch.load(osp.join(stop_parity_dir, 'inputs_T12_B3.pt'))
    long_caption = golden['captions'][2]
    tok = TokenizeText(context_length=32)
    n_bpe = len(tok.tokenizer.encode(long_caption))
    assert n_bpe > 30  # the golden caption really is over-long
    ids = tok.encode([long_caption])[0]
    assert ids[0] == SOT and ids[-1] == EOT
    assert (ids == EOT).sum() == 1
    assert ids.tolist()[1:31] == tok.tokenizer.encode(long_caption)[:30]
    assert tok.num_truncated == 1 and tok.num_texts == 1


def test_layout_and_padding():
    tok = TokenizeText(context_length=16)
    bpe = tok.tokenizer.encode('A man is playing a guitar.')
    ids = tok.encode('A man is playing a guitar.')
    assert ids.shape == (1, 16)
    row = ids[0].tolist()
    assert row[:len(bpe) + 2] == [SOT] + bpe + [EOT]
    assert row[len(bpe) + 2:] == [0] * (16 - len(bpe) - 2)
    # the EOT position is the argmax, as CLIP text encoders use it
    assert int(ids[0].argmax()) == len(bpe) + 1
    assert tok.num_truncated == 0


@pytest.mark.parametrize('context_length', [2, 8, 32])
def test_truncation_boundary(context_length):
    """Captions of context_length - 3 ... context_length BPE tokens: only
    those with more than context_length - 2 are cut (and counted), keeping
    their first context_length - 2 tokens and ending with EOT."""
    keep = context_length - 2
    tok = TokenizeText(context_length=context_length)
    lengths = [n for n in range(keep - 1, keep + 3) if n >= 0]
    texts = [' '.join(['a'] * n) for n in lengths]
    bpe = [tok.tokenizer.encode(t) for t in texts]
    assert [len(b) for b in bpe] == lengths  # 'a' is one BPE token
    ids = tok.encode(texts)
    for row, tokens in zip(ids.tolist(), bpe):
        expected = [SOT] + tokens[:keep] + [EOT]
        assert row == expected + [0] * (context_length - len(expected))
    assert tok.num_truncated == sum(n > keep for n in lengths)
    assert tok.num_texts == len(lengths)


def test_transform_list_and_string_and_truncation_log(monkeypatch):
    messages = []
    import mmstop.datasets.transforms.text_tokenize as mod
    monkeypatch.setattr(mod, 'print_log',
                        lambda msg, **kw: messages.append(msg))
    tok = TRANSFORMS.build(dict(type='TokenizeText', context_length=6))
    out = tok(
        dict(
            text=['one two', 'one two three four five six'], filename='v.mp4'))
    assert out['text_ids'].shape == (2, 6)
    assert out['text_truncated'] == 1
    assert out['text_ids'][1].tolist()[-1] == EOT
    assert len(messages) == 1
    assert '1 caption(s)' in messages[0] and 'v.mp4' in messages[0]
    assert 'context_length=6' in messages[0]
    # a single string gives one row; nine more truncations -> 2nd report
    out = tok(dict(text='a b c d e f g h'))
    assert out['text_ids'].shape == (1, 6) and out['text_truncated'] == 1
    for _ in range(8):
        tok(dict(text=['a b c d e f g h']))
    assert tok.num_truncated == 10 and len(messages) == 2
    assert '10 caption(s)' in messages[1]


def test_bad_input():
    tok = TokenizeText(context_length=8)
    with pytest.raises(KeyError, match="'text'"):
        tok(dict(caption='x'))
    with pytest.raises(TypeError, match='caption 1 must be a str'):
        tok(dict(text=['ok', 3], filename='x.mp4'))
    with pytest.raises(ValueError, match='context_length'):
        TokenizeText(context_length=1)


def test_pickles_without_tables():
    import pickle
    tok = TokenizeText(context_length=8)
    tok.encode('warm up')
    clone = pickle.loads(pickle.dumps(tok))
    assert clone._tokenizer is None
    assert torch.equal(clone.encode('warm up'), tok.encode('warm up'))
