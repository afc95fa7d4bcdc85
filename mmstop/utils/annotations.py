# Copyright (c) mmstop contributors. All rights reserved.
"""Class-name files and the error for malformed annotation files.

Used by the datasets (:mod:`mmstop.datasets`), the STOP text classifier
(:class:`mmstop.models.heads.TextClassifierHead`) and the config runner, so it
depends on none of them.
"""
from typing import List

from mmengine.fileio import exists as file_exists
from mmengine.fileio import list_from_file


class AnnotationError(ValueError):
    """An annotation file line is malformed or holds an invalid label."""


def load_class_names(path: str) -> List[str]:
    """Read one class name per line (trailing blank lines are ignored).

    Args:
        path (str): The class-name file.

    Returns:
        list[str]: The names, index ``i`` being class ``i``.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        AnnotationError: If the file is empty, has a blank line between names
            or repeats a name.
    """
    if not file_exists(path):
        raise FileNotFoundError(f'class-name file {path} does not exist')
    lines = [line.strip() for line in list_from_file(path)]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise AnnotationError(f'class-name file {path} holds no class names')
    seen = {}
    for lineno, name in enumerate(lines, 1):
        if not name:
            raise AnnotationError(
                f'{path}, line {lineno}: empty class name (one name per '
                'line; a blank line would shift every later class index)')
        if name in seen:
            raise AnnotationError(
                f'{path}, line {lineno}: class name {name!r} repeats line '
                f'{seen[name]}')
        seen[name] = lineno
    return lines
