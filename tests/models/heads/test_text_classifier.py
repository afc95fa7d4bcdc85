# Copyright (c) mmstop contributors. All rights reserved.
import logging

import pytest
import torch
from mmengine.logging import MMLogger

from mmstop.models.heads import TextClassifierHead


def test_class_sentences_are_tokenised_with_the_template(tmp_path):
    path = tmp_path / 'classnames.txt'
    path.write_text('apply eye makeup\nbaby crawling\n')
    head = TextClassifierHead(class_names=str(path), context_length=16)
    assert head.num_classes == 2
    assert head.class_names == ['apply eye makeup', 'baby crawling']
    ids = head.class_token_ids
    assert ids.shape == (2, 16)
    assert (ids[:, 0] == 49406).all()  # SOT
    assert (ids.argmax(-1) > 0).all()  # EOT is the largest id
    # not saved with the weights: the class list belongs to the config
    assert 'class_token_ids' not in head.state_dict()


def test_logits_and_errors(tmp_path):
    head = TextClassifierHead(class_names=['a', 'b', 'c'], tau=0.5)
    x = torch.randn(4, 8)
    s = torch.randn(3, 8)
    logits = head(x, class_embeddings=s)
    cos = torch.nn.functional.normalize(x, dim=-1) @ \
        torch.nn.functional.normalize(s, dim=-1).t()
    torch.testing.assert_close(logits, cos * 2.0)
    with pytest.raises(ValueError, match='class text embeddings'):
        head(x)
    with pytest.raises(ValueError, match='2 class embeddings for 3'):
        head(x, class_embeddings=s[:2])
    with pytest.raises(FileNotFoundError, match='missing_names.txt'):
        TextClassifierHead(class_names=str(tmp_path / 'missing_names.txt'))
    with pytest.raises(ValueError, match='num_classes=5'):
        TextClassifierHead(class_names=['a', 'b'], num_classes=5)
    with pytest.raises(ValueError, match='template'):
        TextClassifierHead(class_names=['a'], template='no placeholder')


def test_class_ids_are_those_of_the_caption_transform():
    """Class sentences get the ids TokenizeText gives captions (open_clip's
    BPE, truncated to [SOT, first L-2 tokens, EOT]); truncation is logged."""
    from mmstop.datasets.transforms import TokenizeText
    names = [
        'apply eye makeup',
        'pretending to put something onto something else and then '
        'taking it back off again slowly'
    ]
    head = TextClassifierHead(class_names=names, context_length=12)
    sentences = [f'a video of a person doing {n}' for n in names]
    assert torch.equal(head.class_token_ids,
                       TokenizeText(context_length=12).encode(sentences))
    assert head.class_token_ids[1, -1] == 49407  # truncated, ends with EOT
    with pytest.raises(ValueError, match='context_length must be >= 2'):
        TextClassifierHead(class_names=names, context_length=1)


class Recorder(logging.Handler):

    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_truncated_class_sentences_are_logged():
    logger = MMLogger.get_instance('mmstop_test_head', log_level='WARNING')
    handler = Recorder()
    messages = handler.messages
    logger.addHandler(handler)
    try:
        TextClassifierHead(
            class_names=['a', 'b c d e f g h i'], context_length=10)
    finally:
        logger.removeHandler(handler)
    assert any('1 class sentence(s) have more than 8 BPE tokens' in m
               and "'a video of a person doing b c d e f g h i'" in m
               for m in messages), messages
