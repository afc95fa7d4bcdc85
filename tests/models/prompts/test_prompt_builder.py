# Copyright (c) mmstop contributors. All rights reserved.
"""build_mode_module: an option of the other mode is named as such (with the
way to drop it); an option of no mode is reported as unknown."""
import pytest

from mmstop.models.prompts import (build_inter_frame_prompt,
                                   build_intra_frame_prompt)

INTRA = dict(
    image_size=32, patch_size=8, embed_dims=16, num_patches=16, num_layers=2)
INTER = dict(
    embed_dims=16, num_patches=16, num_prompts=2, num_heads=2, num_frames=4)


@pytest.mark.parametrize('build, sizes, option, owner', [
    (build_intra_frame_prompt, INTRA, dict(mask_pooling='patch'), 'official'),
    (build_inter_frame_prompt, INTER, dict(normalize='video'), 'official'),
])
def test_an_option_of_the_other_mode_names_that_mode(build, sizes, option,
                                                     owner):
    (key, _), = option.items()
    with pytest.raises(
            TypeError,
            match=rf"\['{key}'\] belong to mode "
            rf"'{owner}', not 'paper'.*_delete_=True"):
        build(dict(mode='paper', **option), **sizes)


def test_paper_only_options_are_named_in_official_mode():
    with pytest.raises(
            TypeError,
            match=r"\['alpha'\] belong to mode "
            "'paper', not 'official'"):
        build_intra_frame_prompt(dict(alpha=0.5), **INTRA)


def test_an_option_of_no_mode_is_unknown():
    with pytest.raises(
            TypeError,
            match=r"unknown intra_prompt option\(s\) "
            r"\['mask_poling'\] for mode 'paper' \(no mode"):
        build_intra_frame_prompt(
            dict(mode='paper', mask_poling='patch', mask_pooling='patch'),
            **INTRA)
