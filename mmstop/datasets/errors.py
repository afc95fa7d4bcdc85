# Copyright (c) mmstop contributors. All rights reserved.
"""Clear errors for bad dataset input.

A corrupt or unreadable video normally surfaces deep inside a transform as a
message such as decord's ``RuntimeError: Error reading 3000 bytes...`` that
names neither the file nor the annotation it came from. Datasets run their
pipeline through :func:`run_pipeline_with_context`, which re-raises any
transform failure as :class:`VideoLoadError` naming the sample and the
transform, keeping the original exception as ``__cause__``.
"""
from typing import Any, Callable, Optional


class VideoLoadError(RuntimeError):
    """A sample's video could not be read, decoded or transformed.

    The message names the video file (and, where known, the annotation line)
    plus the failing transform and the underlying error. It takes a single
    message argument so that PyTorch's DataLoader can re-raise it unchanged in
    the main process.
    """


def run_pipeline_with_context(pipeline: Callable,
                              results: dict,
                              context: str,
                              observe: Optional[Callable[[dict], None]] = None
                              ) -> Optional[Any]:
    """Apply ``pipeline`` to ``results``; wrap failures in VideoLoadError.

    Args:
        pipeline (Callable): Usually an :class:`mmengine.dataset.Compose`;
            its ``transforms`` are applied one by one (a transform returning
            ``None`` stops the pipeline and ``None`` is returned, as in
            ``Compose``). Any other callable is called once.
        results (dict): The sample's data info.
        context (str): What is being loaded, e.g. ``"video 'a.mp4' (line 3
            of train.txt)"``; it starts the error message.
        observe (Callable, optional): Called with the results after every
            transform (e.g. to look at the sampled frame indices before
            packing drops them). Defaults to None.

    Returns:
        The pipeline's output, or ``None`` if a transform returned ``None``.

    Raises:
        VideoLoadError: If any transform raises an ``Exception``.
    """
    transforms = getattr(pipeline, 'transforms', None)
    if transforms is None:
        transforms = [pipeline]
    for transform in transforms:
        try:
            results = transform(results)
        except VideoLoadError:
            raise
        except Exception as exc:
            raise VideoLoadError(
                f'could not load {context}: {type(transform).__name__} '
                f'failed with {type(exc).__name__}: {exc}') from exc
        if results is None:
            return None
        if observe is not None:
            observe(results)
    return results
