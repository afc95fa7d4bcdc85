# Copyright (c) mmstop contributors. All rights reserved.
"""on_bad_video='skip' keeps a real training run (STOP demo config,
tools/train.py subprocess) going past unreadable videos, with the count
logged."""
import os.path as osp
import re
import sys

from helpers import REPO_ROOT

from mmstop.datasets import generate_demo_dataset

BAD = ('zero_bytes.mp4', 'truncated.mp4', 'not_a_video.mp4')


def test_skip_trains_past_bad_videos(run_tool, tmp_path):
    demo = generate_demo_dataset(
        str(tmp_path / 'demo'),
        num_classes=4,
        train_per_class=2,
        val_per_class=1,
        seed=0)
    videos = tmp_path / 'demo' / 'videos'
    (videos / BAD[0]).write_bytes(b'')
    data = (videos / 'train_0000.mp4').read_bytes()
    (videos / BAD[1]).write_bytes(data[:len(data) // 3])
    (videos / BAD[2]).write_text('just text\n' * 10)
    ann = tmp_path / 'train.txt'
    ann.write_text(
        open(demo['train_ann']).read() + ''.join(f'{name} 1\n'
                                                 for name in BAD))

    prefix = 'train_dataloader.dataset.'
    out = run_tool([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'train.py'),
        osp.join(REPO_ROOT, 'configs', 'stop_clip_demo.py'), '--work-dir',
        str(tmp_path / 'work'), '--no-validate', '--cfg-options',
        'train_cfg.max_epochs=2', 'train_dataloader.batch_size=11',
        f'model.cls_head.class_names={demo["classnames_file"]}',
        f'{prefix}ann_file={ann}', f'{prefix}data_prefix.video={videos}',
        f'{prefix}classnames_file={demo["classnames_file"]}',
        f'{prefix}on_bad_video=skip', f'{prefix}max_bad_fraction=0.5'
    ], tmp_path / 'train.log')
    # each file reported once, with the reason, though read in both epochs
    for name in BAD:
        reports = re.findall(rf"skipping unreadable video '[^']*{name}': .*",
                             out)
        assert len(reports) == 1, (name, reports)
        assert 'DecordInit failed' in reports[0]
    # the per-epoch count (a replacement may draw a bad file again), and
    # the run finished both epochs
    for epoch in (1, 2):
        count = re.search(
            rf'epoch {epoch}: skipped (\d+) unreadable video'
            r'\(s\) \(each replaced by another sample\); 3 '
            r'distinct unreadable file\(s\)', out)
        assert count and int(count.group(1)) >= 3, out[-3000:]
    assert osp.isfile(tmp_path / 'work' / 'epoch_2.pth')
