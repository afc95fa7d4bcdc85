# Built-in demo: STOP (official mode) on a tiny random CLIP, trained and
# tested on the synthetic dataset that mmstop generates itself
# (``python tools/data/generate_demo_dataset.py data/demo``, or
# ``python tools/run_demo.py`` which does everything). No downloads; a few
# minutes on 2 CPU cores.
#
# No horizontal flip (unlike UCF101): the demo generator's 'moving left' /
# 'moving right' classes (num_classes > 4) swap under a flip.
_base_ = ['./stop_clip_ucf101.py']

num_frames = 8
image_size = 32
data_root = 'data/demo/videos'
ann_file_train = 'data/demo/train.txt'
ann_file_val = 'data/demo/val.txt'
classnames_file = 'data/demo/classnames.txt'

model = dict(
    backbone=dict(
        # 2-layer random CLIP of width 64, patch 8 at 32x32 (4x4 patches)
        arch=dict(
            _delete_=True, base='tiny', image_size=image_size, patch_size=8),
        num_frames=num_frames,
        # the official 11x11 pixel kernels cost more than this tiny CLIP;
        # the official p=0.5 dropouts (three of them) drown 32-px frames in
        # noise and stall 16-video training, so they are off here
        intra_prompt=dict(
            kernel_size=(3, 5, 5), scorer_kernel_size=(3, 5, 5), dropout=0.0),
        pretrained=None),
    cls_head=dict(class_names=classnames_file, in_channels=64))

train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=False),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
# two temporal views per video, class probabilities averaged
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(
        type='UniformSample', clip_len=num_frames, num_clips=2,
        test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
dataset = dict(
    data_prefix=dict(video=data_root), classnames_file=classnames_file)
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(ann_file=ann_file_train, pipeline=train_pipeline, **dataset))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(ann_file=ann_file_val, pipeline=val_pipeline, **dataset))
test_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(ann_file=ann_file_val, pipeline=test_pipeline, **dataset))

# 20 epochs at lr 2e-3: test top-1 100% for seeds 0, 2, 3, 4, 5 and 75% for
# seed 1 (measured, one OpenMP thread). 10 epochs at 5e-3 was seed-fragile
# (12.5-100%, and rounding changes alone moved seed 0 from 87.5% to 50%).
max_epochs = 20
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=2e-3))
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=1e-5,
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
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1, save_best=None))
# nccl on GPUs (the default); mmstop/compat.py falls back to gloo where
# there is no CUDA
randomness = dict(seed=0)
work_dir = './work_dirs/stop_clip_demo'
