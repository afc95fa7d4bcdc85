# Copyright (c) mmstop contributors. All rights reserved.
"""One video through a config's test pipeline, outside a dataset."""
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope


def load_test_sample(cfg: Config,
                     video: str,
                     caption: str = 'a video') -> dict:
    """The packed sample of ``video``: the config's test pipeline
    (``test_dataloader.dataset.pipeline``, the one ``tools/test.py`` runs)
    on the result dict ``mmaction.apis.inference_recognizer`` starts from,
    with ``caption`` as its ``text`` for video-text pipelines.

    Args:
        cfg (Config): The config.
        video (str): A video file.
        caption (str): The caption of video-text pipelines (their
            ``TokenizeText`` needs one). Defaults to ``'a video'``.

    Returns:
        dict: ``inputs`` (all views of the video) and ``data_samples``.
    """
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    return pipeline(
        dict(
            filename=video,
            label=-1,
            start_index=0,
            modality='RGB',
            text=caption))
