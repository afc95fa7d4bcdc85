# Copyright (c) mmstop contributors. All rights reserved.
"""MMAction2's ``VideoDataset`` with checked input and optional class names."""
import os.path as osp
from typing import Callable, List, Optional, Sequence, Union

from mmaction.datasets import VideoDataset
from mmengine.fileio import exists as file_exists
from mmengine.fileio import list_from_file
from mmengine.utils import is_abs

from mmstop.registry import DATASETS
from mmstop.utils.annotations import AnnotationError, load_class_names
from .bad_video import BadVideoMixin

__all__ = ['AnnotationError', 'VideoClsDataset', 'load_class_names']


@DATASETS.register_module()
class VideoClsDataset(BadVideoMixin, VideoDataset):
    """Video classification dataset that rejects bad input with clear errors.

    The annotation format is MMAction2's ``VideoDataset`` list: one
    ``path/to/video.mp4 label`` per line (``path l1 l2 ...`` with
    ``multi_class=True``), paths relative to ``data_prefix['video']``. On top
    of ``VideoDataset`` this dataset

    * checks every label against the number of classes (``num_classes`` or
      the length of ``classnames_file``) and raises :class:`AnnotationError`
      naming the annotation file, line, bad index and valid range; malformed
      lines (non-integer label, missing label outside ``test_mode``) fail the
      same way;
    * checks at load time that every video file exists (``check_files``) and
      raises ``FileNotFoundError`` naming the annotation file, line and path;
    * re-raises any failure of the pipeline (for example decord failing on a
      corrupt file) as :class:`~mmstop.datasets.errors.VideoLoadError` naming
      the video, its annotation line, the transform and the cause, or, with
      ``on_bad_video='skip'``, replaces the sample during training (see
      :mod:`mmstop.datasets.bad_video`); videos shorter than the clip are
      reported once per file;
    * exposes the class names as ``metainfo['classes']`` when
      ``classnames_file`` (or ``metainfo=dict(classes=...)``) is given, e.g.
      for a classifier built from class-name text embeddings.

    Blank lines in the annotation file are skipped. A whitespace delimiter
    (the default) accepts any run of spaces or tabs.

    Args:
        ann_file (str): Path to the annotation file.
        pipeline (list[dict | Callable]): Data transforms.
        data_prefix (dict): ``dict(video=directory)`` holding the videos.
            Defaults to ``dict(video='')``.
        classnames_file (str, optional): Text file with one class name per
            line; relative paths are joined to ``data_root`` like
            ``ann_file``. Defaults to None.
        num_classes (int, optional): Number of classes. Inferred from the
            class names when omitted; must agree with them when both are
            given. When neither is known labels are only checked to be
            non-negative integers. Defaults to None.
        check_files (bool): Check at load time that every video exists.
            Disable for remote storage or very large lists. Defaults to True.
        multi_class (bool): Several labels per line. Defaults to False.
        test_mode (bool): Build for validation/testing; lines without a label
            are accepted (label ``-1``). Defaults to False.
        delimiter (str): Field delimiter of the annotation file.
            Defaults to ``' '``.
        on_bad_video (str): ``'error'`` (stop at an unreadable video) or
            ``'skip'`` (replace the training sample, log the file once,
            count per epoch). Defaults to ``'error'``.
        max_bad_fraction (float): With ``'skip'``, stop once more than this
            fraction of the video files could not be read.
            Defaults to 0.1.
        **kwargs: Other arguments of :class:`mmaction.datasets.VideoDataset`
            (``data_root``, ``metainfo``, ``start_index``, ...).
    """

    def __init__(self,
                 ann_file: str,
                 pipeline: List[Union[dict, Callable]],
                 data_prefix: dict = dict(video=''),
                 classnames_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 check_files: bool = True,
                 multi_class: bool = False,
                 test_mode: bool = False,
                 delimiter: str = ' ',
                 on_bad_video: str = 'error',
                 max_bad_fraction: float = 0.1,
                 **kwargs) -> None:
        self._init_bad_video(on_bad_video, max_bad_fraction)
        self.check_files = check_files
        metainfo = dict(kwargs.pop('metainfo', None) or {})
        classes: Optional[Sequence[str]] = None
        self.classes_source = None
        if classnames_file is not None:
            data_root = kwargs.get('data_root') or ''
            if data_root and not is_abs(classnames_file):
                classnames_file = osp.join(data_root, classnames_file)
            if 'classes' in metainfo:
                raise ValueError(
                    'give the class names either as classnames_file or as '
                    "metainfo['classes'], not both")
            classes = load_class_names(classnames_file)
            self.classes_source = f'class-name file {classnames_file}'
        elif isinstance(metainfo.get('classes'), (list, tuple)):
            classes = list(metainfo['classes'])
            self.classes_source = "metainfo['classes']"
        self.classnames_file = classnames_file

        if num_classes is not None:
            if isinstance(num_classes, bool) or not isinstance(
                    num_classes, int) or num_classes < 1:
                raise ValueError(
                    f'num_classes must be a positive integer, got '
                    f'{num_classes!r}')
            if classes is not None and len(classes) != num_classes:
                raise ValueError(
                    f'num_classes={num_classes} but the '
                    f'{self.classes_source} lists {len(classes)} classes')
        if classes is not None:
            num_classes = len(classes)
            metainfo['classes'] = tuple(classes)
        elif num_classes is not None:
            self.classes_source = f'num_classes={num_classes}'

        super().__init__(
            ann_file,
            pipeline=pipeline,
            data_prefix=data_prefix,
            multi_class=multi_class,
            num_classes=num_classes,
            test_mode=test_mode,
            delimiter=delimiter,
            metainfo=metainfo or None,
            **kwargs)

    def _split(self, line: str) -> List[str]:
        if self.delimiter == ' ':
            return line.split()
        return [field.strip() for field in line.strip().split(self.delimiter)]

    def _parse_label(self, field: str, lineno: int) -> int:
        try:
            label = int(field)
        except ValueError:
            raise AnnotationError(
                f'{self.ann_file}, line {lineno}: label {field!r} is not an '
                'integer class index') from None
        if label < 0 or (self.num_classes is not None
                         and label >= self.num_classes):
            if self.num_classes is None:
                valid = 'class indices must be >= 0'
            else:
                valid = (f'valid class indices are 0..{self.num_classes - 1} '
                         f'({self.classes_source})')
            raise AnnotationError(
                f'{self.ann_file}, line {lineno}: unknown class index '
                f'{label}; {valid}')
        return label

    def _video_exists(self, filename: str) -> bool:
        candidates = [filename]
        if osp.splitext(filename)[0] == filename:
            candidates.append(filename + '.mp4')  # what DecordInit reads
        for path in candidates:
            if '://' in path:
                if file_exists(path):
                    return True
            elif osp.isfile(path):
                return True
        return False

    def load_data_list(self) -> List[dict]:
        """Parse and check the annotation file (see class docstring)."""
        if not file_exists(self.ann_file):
            raise FileNotFoundError(
                f'annotation file {self.ann_file} does not exist')
        prefix = self.data_prefix.get('video')
        data_list, missing = [], []
        for lineno, line in enumerate(list_from_file(self.ann_file), 1):
            fields = self._split(line)
            if not fields:
                continue
            filename = fields[0]
            if len(fields) == 1:
                if not self.test_mode:
                    raise AnnotationError(
                        f'{self.ann_file}, line {lineno}: no label after '
                        f'{filename!r} (expected "path label"; label-less '
                        'lines are only accepted with test_mode=True)')
                label = -1
            elif self.multi_class:
                label = [self._parse_label(f, lineno) for f in fields[1:]]
            elif len(fields) == 2:
                label = self._parse_label(fields[1], lineno)
            else:
                raise AnnotationError(
                    f'{self.ann_file}, line {lineno}: expected "path label", '
                    f'got {len(fields)} fields {fields!r} (multi_class=False)')
            if prefix:
                filename = osp.join(prefix, filename)
            if self.check_files and not self._video_exists(filename):
                missing.append((lineno, filename))
            data_list.append(
                dict(filename=filename, label=label, ann_line=lineno))
        if missing:
            shown = '; '.join(f'line {n}: {path}' for n, path in missing[:5])
            more = (f' (and {len(missing) - 5} more)'
                    if len(missing) > 5 else '')
            raise FileNotFoundError(
                f'{self.ann_file}: {len(missing)} video file(s) listed but '
                f'not found: {shown}{more}')
        return data_list

    def _video_context(self, idx: int, data_info: dict) -> str:
        """Error messages name the video and its annotation line."""
        return (f"video '{data_info.get('filename')}' (sample {idx}, line "
                f"{data_info.get('ann_line')} of {self.ann_file})")
