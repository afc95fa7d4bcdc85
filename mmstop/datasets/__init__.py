# Copyright (c) mmstop contributors. All rights reserved.
from . import transforms  # noqa: F401
from .demo import DEMO_CLASSES, generate_demo_dataset
from .errors import VideoLoadError, run_pipeline_with_context
from .motion_pretrain import MotionPretrainDataset
from .shape_captions import ShapeCaptionDataset
from .video_cls_dataset import (AnnotationError, VideoClsDataset,
                                load_class_names)
from .video_text_dataset import (VideoTextRetrievalDataset,
                                 load_video_text_annotations)

__all__ = [
    'AnnotationError', 'DEMO_CLASSES', 'MotionPretrainDataset',
    'ShapeCaptionDataset', 'VideoClsDataset', 'VideoLoadError',
    'generate_demo_dataset', 'load_class_names', 'run_pipeline_with_context',
    'VideoTextRetrievalDataset', 'load_video_text_annotations'
]
