# STOP (CVPR 2025) action recognition on UCF101 split 1, official-mode model.
#
# The official code has no action-recognition path; this recipe follows
# the paper's description plus these ASSUMPTIONS (README, "Action
# recognition recipe"): 12 frames, 224 centre crop, horizontal flip, the
# MSR-VTT optimiser (AdamW lr 1e-3, wd 0.2, 10 % warm-up, cosine), global
# batch 128 (16 per GPU x 8 GPUs), 30 epochs, class sentences "a video of a
# person doing {}", temperature = the frozen CLIP scale (0.01).
#
# The horizontal flip is opt-in per dataset: no UCF101 class depends on
# left/right, so flipping keeps every label. Configs of data with direction
# classes (SSv2, the demos) leave it out.
#
#   bash tools/dist_train.sh configs/stop_clip_ucf101.py 8
#   bash tools/dist_test.sh configs/stop_clip_ucf101.py \
#       work_dirs/stop_clip_ucf101/best_*.pth 8
_base_ = [
    './_base_/default_runtime.py',
    './_base_/models/stop_clip_vit-b32.py',
    './_base_/schedules/stop_adamw.py',
]
custom_imports = dict(imports=['mmstop'], allow_failed_imports=False)
# re-derives the config from overridden top-level variables and checks the
# class counts before building (README, "Configs: what to change")
runner_type = 'ResolvedConfigRunner'

# What a new dataset changes; every field below derives from these.
num_frames = 12
image_size = 224
data_root = 'data/ucf101/videos'
ann_file_train = 'data/ucf101/ucf101_train_split_1_videos.txt'
ann_file_val = 'data/ucf101/ucf101_val_split_1_videos.txt'
# made by tools/data/build_classnames.py
classnames_file = 'data/ucf101/classnames.txt'
num_classes = None  # = the lines of classnames_file; set it to check them

model = dict(
    type='STOPRecognizer',
    backbone=dict(num_frames=num_frames, arch=dict(image_size=image_size)),
    cls_head=dict(
        type='TextClassifierHead',
        class_names=classnames_file,
        num_classes=num_classes,
        template='a video of a person doing {}',
        context_length=32,
        in_channels=512,
        average_clips='prob'),
    data_preprocessor=dict(format_shape='NCTHW'))

train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=False),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='Flip', flip_ratio=0.5),  # opt-in, see the header
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
val_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
# 2 temporal views x 3 spatial crops; class probabilities are averaged
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(
        type='UniformSample', clip_len=num_frames, num_clips=2,
        test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='ThreeCrop', crop_size=image_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]

train_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='VideoClsDataset',
        ann_file=ann_file_train,
        data_prefix=dict(video=data_root),
        classnames_file=classnames_file,
        num_classes=num_classes,
        pipeline=train_pipeline))
# Official-mode features depend on the batch (the inter-frame scores are
# min-max normalised over every frame of the batch): evaluation always uses
# this fixed batch size.
val_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='VideoClsDataset',
        ann_file=ann_file_val,
        data_prefix=dict(video=data_root),
        classnames_file=classnames_file,
        num_classes=num_classes,
        pipeline=val_pipeline,
        test_mode=True))
test_dataloader = dict(
    batch_size=1,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='VideoClsDataset',
        ann_file=ann_file_val,
        data_prefix=dict(video=data_root),
        classnames_file=classnames_file,
        num_classes=num_classes,
        pipeline=test_pipeline,
        test_mode=True))

val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

max_epochs = 30
train_cfg = dict(
    type='EpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_begin=1,
    val_interval=1)
param_scheduler = [
    # official warm-up: lr = 1e-8 + (step / warm) * (lr - 1e-8)
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
# the intra-frame region scorer is trainable but receives no gradient
# (hard top-k), as in the official code
find_unused_parameters = True
auto_scale_lr = dict(enable=False, base_batch_size=128)
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=2, save_best='auto'))
