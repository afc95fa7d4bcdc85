# Copyright (c) mmstop contributors. All rights reserved.
"""tools/model_converters/stop_official_to_mmstop.py: safe reading of
official training checkpoints, refusal to write nothing, counts."""
import argparse
import fractions

import numpy as np
import pytest
import torch


@pytest.fixture(scope='module')
def tool_main(load_tool):
    return load_tool('tools/model_converters/stop_official_to_mmstop.py').main


def official_state():
    """Two CLIP and two STOP keys with official names (DDP prefix)."""
    return {
        'module.clip.visual.conv1.weight': torch.randn(8, 3, 4, 4),
        'module.clip.logit_scale': torch.tensor(4.6),
        'module.clip.visual.prompt_embeddings': torch.randn(1, 4, 8),
        'module.clip.visual.TemporalPrompt.Conv.0.weight': torch.randn(2, 1),
    }


def test_training_checkpoint_converts_safely(tmp_path, tool_main, capsys):
    """Optimizer state, numpy values and argparse args load under
    weights_only=True; the output names the counts."""
    state = official_state()
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    src, dst = tmp_path / 'ckpt.pth.tar', tmp_path / 'out.pth'
    torch.save(
        dict(
            state_dict=state,
            optimizer=optimizer.state_dict(),
            epoch=3,
            best=np.float64(47.7),
            args=argparse.Namespace(lr=1e-3)), src)
    tool_main([str(src), str(dst)])
    out = torch.load(dst, weights_only=True)['state_dict']
    assert torch.equal(out['backbone.clip.visual.conv1.weight'],
                       state['module.clip.visual.conv1.weight'])
    assert 'backbone.global_prompts' in out
    assert 'converted 4 tensors (2 CLIP, 2 STOP' in capsys.readouterr().out


def test_nothing_recognisable_writes_nothing(tmp_path, tool_main):
    src, dst = tmp_path / 'src.pth', tmp_path / 'out.pth'
    torch.save({'state_dict': {}}, src)
    with pytest.raises(SystemExit, match='no recognisable parameter'):
        tool_main([str(src), str(dst)])
    assert not dst.exists()
    torch.save(
        {
            'state_dict': {
                'layers.0.norm.weight': torch.ones(2),
                **official_state()
            }
        }, src)
    with pytest.raises(
            SystemExit,
            match=r"1 of 5 key\(s\) .*\(4 recognised\).*"
            r"layers\.0\.norm\.weight"):
        tool_main([str(src), str(dst)])
    assert not dst.exists()


def test_foreign_types_need_unsafe_load(tmp_path, tool_main):
    src, dst = tmp_path / 'src.pth', tmp_path / 'out.pth'
    torch.save(
        dict(state_dict=official_state(), extra=fractions.Fraction(1, 3)), src)
    with pytest.raises(SystemExit, match='fractions.Fraction.*--unsafe-load'):
        tool_main([str(src), str(dst)])
    assert not dst.exists()
    tool_main([str(src), str(dst), '--unsafe-load'])
    assert len(torch.load(dst, weights_only=True)['state_dict']) == 4
