# Built-in retrieval demo: STOP (official mode) on a tiny random CLIP,
# trained and tested on the captions of the synthetic demo dataset
# (``python tools/data/generate_demo_dataset.py data/demo``). No downloads;
# well under a minute on 2 CPU cores.
#
#   python tools/train.py configs/stop_clip_retrieval_demo.py
#   python tools/test.py configs/stop_clip_retrieval_demo.py \
#       work_dirs/stop_clip_retrieval_demo/epoch_5.pth
#   python tools/retrieval_demo.py embed configs/stop_clip_retrieval_demo.py \
#       work_dirs/stop_clip_retrieval_demo/epoch_5.pth data/demo/videos \
#       --out work_dirs/demo_videos.pt
#   python tools/retrieval_demo.py query work_dirs/demo_videos.pt \
#       "a red square moving up"
_base_ = ['./stop_clip_msrvtt.py']

num_frames = 8
image_size = 32
context_length = 32
data_root = 'data/demo/videos'
ann_file_train = 'data/demo/captions_train.json'
ann_file_test = 'data/demo/captions_val.json'

model = dict(
    backbone=dict(
        # 2-layer random CLIP of width 64, patch 8 at 32x32 (4x4 patches)
        arch=dict(
            _delete_=True, base='tiny', image_size=image_size, patch_size=8),
        num_frames=num_frames,
        # the official 11x11 pixel kernels cost more than this tiny CLIP
        intra_prompt=dict(kernel_size=(3, 5, 5), scorer_kernel_size=(3, 5, 5)),
        pretrained=None))

train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=False),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackVideoTextInputs')
]
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackVideoTextInputs')
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        ann_file=ann_file_train,
        data_prefix=dict(video=data_root),
        pipeline=train_pipeline))
# fixed evaluation batch size (official-mode features depend on the batch)
test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        ann_file=ann_file_test,
        data_prefix=dict(video=data_root),
        pipeline=test_pipeline))
val_dataloader = test_dataloader

max_epochs = 5
base_lr = 5e-3
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-8 / base_lr,
        by_epoch=True,
        begin=0,
        end=0.1 * max_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-8,
        by_epoch=True,
        begin=0.1 * max_epochs,
        end=max_epochs,
        T_max=0.9 * max_epochs,
        convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(interval=4),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
# nccl on GPUs (the default); mmstop/compat.py falls back to gloo where
# there is no CUDA
randomness = dict(seed=0)
work_dir = './work_dirs/stop_clip_retrieval_demo'
