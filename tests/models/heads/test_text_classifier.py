# Copyright (c) mmstop contributors. All rights reserved.
import pytest
import torch

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
