# Copyright (c) mmstop contributors. All rights reserved.
"""Count the training videos skipped with ``on_bad_video='skip'``."""
from typing import Set

from mmengine.hooks import Hook

from mmstop.registry import HOOKS


def _skipped_in(data_batch) -> list:
    samples = data_batch.get('data_samples') if isinstance(data_batch,
                                                           dict) else None
    out = []
    for sample in samples or []:
        info = getattr(sample, 'metainfo', None)
        if isinstance(info, dict):
            out += list(info.get('skipped_videos') or [])
    return out


@HOOKS.register_module()
class BadVideoHook(Hook):
    """Report per epoch how many training videos were skipped.

    Datasets with ``on_bad_video='skip'`` (see
    :mod:`mmstop.datasets.bad_video`) replace a sample whose video cannot
    be read and mark the replacement with the skipped file. The marks reach
    the main process with the batch whatever the number of dataloader
    workers; this hook counts them and logs after each epoch how many reads
    were skipped and how many distinct files have failed so far (the
    dataset itself logs each file once with the reason, and stops the run
    past its ``max_bad_fraction``). The counts are also stored in the
    message hub (``train/skipped_videos`` per epoch,
    ``bad_video_files`` for the run). Nothing is logged for an epoch without
    skipped videos.
    """

    priority = 'NORMAL'

    def __init__(self) -> None:
        self.epoch_count = 0
        self.files: Set[str] = set()

    def before_train_epoch(self, runner) -> None:
        self.epoch_count = 0

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        for filename, _ in _skipped_in(data_batch):
            self.epoch_count += 1
            self.files.add(filename)

    def after_train_epoch(self, runner) -> None:
        if not self.epoch_count:
            return
        runner.message_hub.update_info('train/skipped_videos',
                                       self.epoch_count)
        runner.message_hub.update_info('bad_video_files', sorted(self.files))
        runner.logger.warning(
            f'epoch {runner.epoch + 1}: skipped {self.epoch_count} unreadable '
            'video(s) (each replaced by another sample); '
            f'{len(self.files)} distinct unreadable file(s) so far: '
            f'{sorted(self.files)}')
