# Copyright (c) mmstop contributors. All rights reserved.
"""New class names for a STOP recognizer at inference (issue 11): the head
tokenises them again and the cached class embeddings are recomputed."""
import pytest
import torch
from helpers import TINY_WIDTH, build_model, tiny_stop_backbone

pytestmark = pytest.mark.usefixtures('one_thread')


def recognizer(class_names):
    return build_model(
        dict(
            type='STOPRecognizer',
            backbone=tiny_stop_backbone(inter_prompt=dict(normalize='video')),
            cls_head=dict(
                type='TextClassifierHead',
                class_names=class_names,
                in_channels=TINY_WIDTH),
            data_preprocessor=dict(
                type='ActionDataPreprocessor', format_shape='NCTHW'))).eval()


def scores(model, clips):
    with torch.no_grad():
        feats, kwargs = model.extract_feat(clips, test_mode=True)
        return model.cls_head(feats, **kwargs)


@pytest.mark.parametrize('new', [['swimming', 'riding a horse', 'cooking'],
                                 ['swimming', 'cooking']])
def test_set_class_names_recomputes_cached_embeddings(new):
    """Same count or not, the new names are scored (the cache used to be
    kept: the old classes' scores, or a count mismatch)."""
    clips = torch.randn(2, 1, 3, 4, 32, 32)
    model = recognizer(['jumping', 'running', 'walking'])
    before = scores(model, clips)
    model.cls_head.set_class_names(new)
    after = scores(model, clips)
    assert model.cls_head.num_classes == len(new)
    assert model.cls_head.class_names == new
    torch.testing.assert_close(after, scores(recognizer(new), clips))
    assert after.shape != before.shape or not torch.allclose(after, before)


def test_class_names_from_a_file(tmp_path):
    path = tmp_path / 'names.txt'
    path.write_text('swimming\ncooking\n')
    model = recognizer(['jumping'])
    model.cls_head.set_class_names(str(path))
    assert model.cls_head.class_names == ['swimming', 'cooking']
    assert tuple(model.cls_head.class_token_ids.shape) == (2, 32)
