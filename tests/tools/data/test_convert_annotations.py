# Copyright (c) mmstop contributors. All rights reserved.
"""Converters of tools/data on small hand-written samples of each format."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from mmstop.datasets import VideoTextRetrievalDataset

REPO = osp.dirname(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


@pytest.fixture
def converter(load_tool):
    """``converter(name)``: tools/data/<name>/convert_annotations.py."""
    return lambda name: load_tool(f'tools/data/{name}/convert_annotations.py')


def _check_loadable(entries, tmp_path, **kwargs):
    """The output is a valid mmstop annotation file."""
    path = tmp_path / 'check.json'
    path.write_text(json.dumps(entries))
    ds = VideoTextRetrievalDataset(
        str(path), [],
        data_prefix=dict(video=str(tmp_path)),
        check_videos=False,
        test_mode=True,
        **kwargs)
    return [ds.get_data_info(i) for i in range(len(ds))]


# ----------------------------------------------------------------- MSR-VTT
MSRVTT_DATA = {
    'info': {
        'year': 2016
    },
    'videos': [
        {
            'category': 9,
            'url': 'https://www.youtube.com/watch?v=9lZi22qLlEo',
            'video_id': 'video0',
            'start time': 137.72,
            'end time': 149.44,
            'split': 'train',
            'id': 0
        },
        {
            'category': 16,
            'url': 'https://www.youtube.com/watch?v=w4JM08PDEng',
            'video_id': 'video1',
            'start time': 184.33,
            'end time': 206.89,
            'split': 'train',
            'id': 1
        },
    ],
    'sentences': [
        {
            'caption': 'a car is shown',
            'video_id': 'video0',
            'sen_id': 0
        },
        {
            'caption': 'a man talks about a car',
            'video_id': 'video1',
            'sen_id': 1
        },
        {
            'caption': 'a cartoon shows two dogs',
            'video_id': 'video0',
            'sen_id': 2
        },
        {
            'caption': 'people, talking',
            'video_id': 'video1',
            'sen_id': 3
        },
        {
            'caption': 'not in the split',
            'video_id': 'video9',
            'sen_id': 4
        },
    ]
}
MSRVTT_TRAIN_CSV = 'video_id\nvideo1\nvideo0\n'
MSRVTT_TEST_CSV = ('key,vid_key,video_id,sentence\n'
                   'ret0,msr9770,video9770,a person is connecting something '
                   'to system\n'
                   'ret1,msr9771,video9771,"a girl, a ball and a dog"\n')


def test_msrvtt(converter, tmp_path):
    mod = converter('msrvtt')
    (tmp_path / 'MSRVTT_data.json').write_text(json.dumps(MSRVTT_DATA))
    (tmp_path / 'train.csv').write_text(MSRVTT_TRAIN_CSV)
    (tmp_path / 'test.csv').write_text(MSRVTT_TEST_CSV)
    train = mod.convert_train(
        str(tmp_path / 'train.csv'), str(tmp_path / 'MSRVTT_data.json'))
    # csv order, captions in MSRVTT_data.json order
    assert train == [
        dict(
            filename='video1.mp4',
            video_id='video1',
            captions=['a man talks about a car', 'people, talking']),
        dict(
            filename='video0.mp4',
            video_id='video0',
            captions=['a car is shown', 'a cartoon shows two dogs']),
    ]
    test = mod.convert_test(str(tmp_path / 'test.csv'), 'all/{video_id}.avi')
    assert test == [
        dict(
            filename='all/video9770.avi',
            video_id='video9770',
            captions=['a person is connecting something to system']),
        dict(
            filename='all/video9771.avi',
            video_id='video9771',
            captions=['a girl, a ball and a dog']),
    ]
    infos = _check_loadable(train, tmp_path)
    assert [len(i['text']) for i in infos] == [2, 2]
    # a training video without any caption is an error naming it
    (tmp_path / 'train2.csv').write_text('video_id\nvideo5\n')
    with pytest.raises(ValueError, match="'video5'"):
        mod.convert_train(
            str(tmp_path / 'train2.csv'), str(tmp_path / 'MSRVTT_data.json'))
    (tmp_path / 'bad.csv').write_text('vid\nvideo0\n')
    with pytest.raises(ValueError, match="'video_id' column"):
        mod.convert_test(str(tmp_path / 'bad.csv'))
    # command line, with the missing-video filter
    (tmp_path / 'videos').mkdir()
    (tmp_path / 'videos' / 'video0.mp4').write_bytes(b'')
    out = tmp_path / 'out'
    subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools/data/msrvtt/convert_annotations.py'),
        '--data-json',
        str(tmp_path / 'MSRVTT_data.json'), '--train-csv',
        str(tmp_path / 'train.csv'), '--test-csv',
        str(tmp_path / 'test.csv'), '--out-dir',
        str(out), '--video-root',
        str(tmp_path / 'videos'), '--skip-missing'
    ],
                   check=True,
                   capture_output=True)
    assert json.loads((out / 'msrvtt_train_9k.json').read_text()) == train[1:]
    assert json.loads((out / 'msrvtt_test_1k.json').read_text()) == []


# ------------------------------------------------------------- ActivityNet
ANET = {
    'v_QOlSCBRmfWY': {
        'duration':
        82.73,
        'timestamps': [[0.83, 19.86], [17.37, 60.81]],
        'sentences': [
            'A young woman is seen standing in a room.',
            ' The girl dances around the room.'
        ]
    },
    'v_ehGHCYKzyZ8': {
        'duration': 61.72,
        'timestamps': [[0, 2.78]],
        'sentences': ['The video starts with a title logo sequence.']
    },
    'v_NHznDFD3V3k': {
        'duration': 10.0,
        'timestamps': [[0, 10.0]],
        'sentences': ['A broken video.']
    },
}


def test_activitynet(converter, tmp_path):
    mod = converter('activitynet')
    cap = tmp_path / 'val_1.json'
    cap.write_text(json.dumps(ANET))
    entries = mod.convert(str(cap), exclude=['v_NHznDFD3V3k'])
    assert [e['video_id']
            for e in entries] == ['v_QOlSCBRmfWY', 'v_ehGHCYKzyZ8']
    assert entries[0]['filename'] == 'v_QOlSCBRmfWY.mp4'
    assert entries[0]['captions'] == ANET['v_QOlSCBRmfWY']['sentences']
    assert entries[0]['duration'] == 82.73
    # id list: order and subset; unknown ids skipped; youtube-id pattern
    (tmp_path / 'ids.json').write_text(
        json.dumps(['v_ehGHCYKzyZ8', 'v_unknown', 'v_QOlSCBRmfWY']))
    ids = mod.read_id_list(str(tmp_path / 'ids.json'))
    entries = mod.convert(str(cap), ids=ids, video_pattern='{youtube_id}.mkv')
    assert [e['filename']
            for e in entries] == ['ehGHCYKzyZ8.mkv', 'QOlSCBRmfWY.mkv']
    # a text id list and the official video_path.json map
    (tmp_path / 'ids.txt').write_text('v_QOlSCBRmfWY\n\nv_ehGHCYKzyZ8\n')
    assert mod.read_id_list(str(
        tmp_path / 'ids.txt')) == ['v_QOlSCBRmfWY', 'v_ehGHCYKzyZ8']
    entries = mod.convert(str(cap), video_paths={'QOlSCBRmfWY': 'Q.avi'})
    assert [e['filename'] for e in entries] == ['Q.avi']
    # paragraph mode gives the official " ".join(sentences), whitespace
    # collapsed
    infos = _check_loadable(mod.convert(str(cap)), tmp_path, paragraph=True)
    assert infos[0]['text'] == [
        'A young woman is seen standing in a room. The girl dances around '
        'the room.'
    ]
    out = tmp_path / 'anet.json'
    mod.main([
        '--captions',
        str(cap), '--exclude', 'NHznDFD3V3k', '--out',
        str(out)
    ])
    assert len(json.loads(out.read_text())) == 2


# ----------------------------------------------------------------- DiDeMo
DIDEMO = [
    {
        'annotation_id': 1,
        'description': 'the girl jumps into the pool',
        'video': '10015567@N08_3655084291_d8b58466fa.mov',
        'times': [[0, 0], [1, 1]],
        'download_link': 'x',
        'num_segments': 6
    },
    {
        'annotation_id': 2,
        'description': 'a dog runs by',
        'video': '10057376@N00_2537289585_2e6b3bbf47.mp4',
        'times': [[2, 3]],
        'download_link': 'x',
        'num_segments': 6
    },
    {
        'annotation_id': 3,
        'description': 'camera zooms out',
        'video': '10015567@N08_3655084291_d8b58466fa.mov',
        'times': [[4, 5]],
        'download_link': 'x',
        'num_segments': 6
    },
]


def test_didemo(converter, tmp_path):
    mod = converter('didemo')
    src = tmp_path / 'test_data.json'
    src.write_text(json.dumps(DIDEMO))
    entries = mod.convert(str(src), video_pattern='{video}.mp4')
    assert entries == [
        dict(
            filename='10015567@N08_3655084291_d8b58466fa.mov.mp4',
            video_id='10015567@N08_3655084291_d8b58466fa.mov',
            captions=['the girl jumps into the pool', 'camera zooms out'],
            end_sec=31.0),
        dict(
            filename='10057376@N00_2537289585_2e6b3bbf47.mp4.mp4',
            video_id='10057376@N00_2537289585_2e6b3bbf47.mp4',
            captions=['a dog runs by'],
            end_sec=31.0),
    ]
    (tmp_path /
     'test_list.txt').write_text('10057376@N00_2537289585_2e6b3bbf47.mp4\n')
    only = mod.convert(
        str(src),
        video_list=mod.read_list(str(tmp_path / 'test_list.txt')),
        end_sec=0)
    assert len(only) == 1 and 'end_sec' not in only[0]
    assert only[0]['filename'] == '10057376@N00_2537289585_2e6b3bbf47.mp4'
    infos = _check_loadable(entries, tmp_path, paragraph=True)
    assert infos[0]['text'] == [
        'the girl jumps into the pool camera zooms '
        'out'
    ]
    assert infos[0]['end_sec'] == 31.0
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps([{'video': 'x'}]))
    with pytest.raises(ValueError, match='moment 0'):
        mod.convert(str(bad))


# ------------------------------------------------------------------ VATEX
VATEX = [
    {
        'videoID': 'Ptf_2VRj-V0_000122_000132',
        'enCap': ['A man is playing a drum.', 'Someone drums in a room.'],
        'chCap': ['一个男人在打鼓。', '有人在房间里打鼓。']
    },
    {
        'videoID': '--07WQ2iBlw_000001_000011',
        'enCap': ['A woman talks.'],
        'chCap': ['一个女人在说话。']
    },
]


def test_vatex(converter, tmp_path):
    mod = converter('vatex')
    src = tmp_path / 'vatex_validation_v1.0.json'
    src.write_text(json.dumps(VATEX, ensure_ascii=False), encoding='utf-8')
    entries = mod.convert(str(src))
    assert entries == [
        dict(
            filename='Ptf_2VRj-V0_000122_000132.mp4',
            video_id='Ptf_2VRj-V0_000122_000132',
            captions=VATEX[0]['enCap']),
        dict(
            filename='--07WQ2iBlw_000001_000011.mp4',
            video_id='--07WQ2iBlw_000001_000011',
            captions=VATEX[1]['enCap']),
    ]
    zh = mod.convert(str(src), caption_key='chCap')
    assert zh[1]['captions'] == ['一个女人在说话。']
    # ref_captions.json + split list (order from the list)
    ref = tmp_path / 'ref_captions.json'
    ref.write_text(json.dumps({v['videoID']: v['enCap'] for v in VATEX}))
    (tmp_path / 'test_list.txt'
     ).write_text('--07WQ2iBlw_000001_000011\nPtf_2VRj-V0_000122_000132\n')
    listed = mod.convert(
        str(ref), video_list=mod.read_list(str(tmp_path / 'test_list.txt')))
    assert [e['video_id'] for e in listed
            ] == ['--07WQ2iBlw_000001_000011', 'Ptf_2VRj-V0_000122_000132']
    with pytest.raises(ValueError, match="'nope'"):
        mod.convert(str(ref), video_list=['nope'])
    infos = _check_loadable(entries, tmp_path)
    assert [len(i['text']) for i in infos] == [2, 1]
    out = tmp_path / 'v.json'
    mod.main(['--ref-captions', str(ref), '--out', str(out)])
    assert json.loads(out.read_text()) == entries


# ----------------------------------------------- options shared by all four
@pytest.mark.parametrize('name, argv', [
    ('msrvtt', ['--test-csv', 'x.csv', '--out-dir', 'out']),
    ('activitynet', ['--captions', 'x.json', '--out', 'o.json']),
    ('didemo', ['--data-json', 'x.json', '--out', 'o.json']),
    ('vatex', ['--vatex-json', 'x.json', '--out', 'o.json']),
])
def test_skip_missing_needs_video_root(converter, name, argv, capsys):
    mod = converter(name)
    with pytest.raises(SystemExit) as exc:
        mod.main(argv + ['--skip-missing'])
    assert exc.value.code == 2
    assert '--skip-missing needs --video-root' in capsys.readouterr().err
