# SSP (NeurIPS 2025) on a frozen VideoMamba-M, UCF101 split 1: the official
# recipe of sh/UCF101.sh + main_video.py defaults.
# Paper: 97.03 top-1 (4 x RTX 4090).
#
#   bash tools/dist_train.sh configs/ssp_videomamba_m16_ucf101.py 4
#   bash tools/dist_test.sh configs/ssp_videomamba_m16_ucf101.py \
#       work_dirs/ssp_videomamba_m16_ucf101/best_acc_top1_epoch_*.pth 4
#
# Needs a GPU (bf16 AmpOptimWrapper) and the K400 checkpoint
# ``pretrained_checkpoint`` below (OpenGVLab/VideoMamba model zoo). Training
# validates single-view after every epoch and keeps the best checkpoint;
# tools/test.py runs the 4 x 3 view test on it (official ``--test_best``).
#
# Recipe (official value -> here):
# * 8 frames at stride 4, 224 x 224, drop path 0.4, SSP P = 3.
# * AdamW (0.9, 0.999), eps 1e-8, wd 0.05 without decay on 1-D / bias /
#   pos-embed tensors; 5 warm-up epochs from warmup_lr, then per-iteration
#   cosine to min_lr; 10 epochs; bf16.
# * Repeated augmentation x2 (both copies in the batch): RepeatedAugment.
# * Per clip: RandAugment rand-m7-n4-mstd0.5-inc1 (timm, same ops for every
#   frame) -> torchvision RandAugment(num_ops=4, magnitude=7 of 10,
#   bilinear), also one op draw per clip. APPROXIMATION: torchvision applies
#   every drawn op (timm: each with p 0.5), uses a fixed magnitude (timm:
#   std 0.5 noise), has Identity but no Invert / SolarizeAdd, posterizes
#   milder (5 bits at m7; timm 2 bits) and interpolates bilinearly (timm:
#   bicubic); rotate / shear / relative translate (0.45 x frame size) /
#   colour ops use the same ranges. Then random resized crop (scale 0.08-1,
#   ratio 3/4-4/3, one box per clip) to 224, horizontal flip 0.5 (opt-in:
#   no UCF101 class depends on left/right; configs of data with direction
#   classes leave it out) and random erasing (p 0.25, one box for all
#   frames, per-pixel normal noise of the ImageNet statistics = N(0, 1)
#   after normalisation; values clipped to 0..255 here).
# * Mixup 0.8 / CutMix 1.0 / switch 0.5 and label smoothing 0.1: the data
#   preprocessor's RandomBatchAugment and the head's label_smooth_eps (base
#   model config). The mixing partner is a random permutation of the batch
#   (timm: the reversed batch).
# * Sampling APPROXIMATIONS (MMAction2 SampleFrames):
#   train frames start + 4k (official: 8 linspace points over 32 frames),
#   val takes the centred window (official: the window ending at
#   (n - 32) // 2), test windows start at round(k (n - 29) / (S - 1))
#   (official: int(k (n - 32) / (S - 1))). Short videos repeat the last
#   frame as officially.
# * Evaluation runs in fp32 (official: bf16). Test: softmax per view,
#   probabilities averaged over the 4 x 3 views (official merge()).
_base_ = [
    './_base_/default_runtime.py',
    './_base_/models/ssp_videomamba_m16.py',
    './_base_/schedules/ssp_adamw_bf16.py',
]
custom_imports = dict(imports=['mmstop'], allow_failed_imports=False)
# re-derives the config from overridden top-level variables and checks the
# class counts before building (README, "Configs: what to change")
runner_type = 'ResolvedConfigRunner'

# What a new dataset changes; every field below derives from these.
num_classes = 101
num_frames = 8
image_size = 224
pretrained_checkpoint = \
    'data/pretrained/videomamba_m16_k400_mask_ft_f8_res224.pth'
data_root = 'data/ucf101/videos'
ann_file_train = 'data/ucf101/ucf101_train_split_1_videos.txt'
ann_file_val = 'data/ucf101/ucf101_val_split_1_videos.txt'
ann_file_test = ann_file_val  # official: val.csv = test.csv = split 1 test

model = dict(
    backbone=dict(
        img_size=image_size,
        num_frames=num_frames,
        pretrained=pretrained_checkpoint),
    cls_head=dict(num_classes=num_classes),
    data_preprocessor=dict(
        blending=dict(augments=[
            dict(type='MixupBlending', alpha=0.8, num_classes=num_classes),
            dict(type='CutmixBlending', alpha=1.0, num_classes=num_classes)
        ])))

img_mean = [123.675, 116.28, 103.53]
img_std = [58.395, 57.12, 57.375]
# the random augmentation of one clip, run twice per decoded video
clip_augment = [
    dict(
        type='TorchVisionWrapper',
        op='RandAugment',
        num_ops=4,
        magnitude=7,
        num_magnitude_bins=11,
        interpolation=2),  # 2 = bilinear
    dict(
        type='RandomResizedCrop',
        area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3)),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
    dict(type='Flip', flip_ratio=0.5),  # opt-in, see the header
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        fill_color=img_mean,
        fill_std=img_std),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(
        type='SampleFrames',
        clip_len=num_frames,
        frame_interval=4,
        num_clips=1,
        out_of_bound_opt='repeat_last'),
    dict(type='DecordDecode'),
    dict(type='RepeatedAugment', num_repeats=2, transforms=clip_augment)
]
val_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(
        type='SampleFrames',
        clip_len=num_frames,
        frame_interval=4,
        num_clips=1,
        test_mode=True,
        out_of_bound_opt='repeat_last'),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
# 4 temporal windows x 3 crops along the long side
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(
        type='SampleFrames',
        clip_len=num_frames,
        frame_interval=4,
        num_clips=4,
        test_mode=True,
        out_of_bound_opt='repeat_last'),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='ThreeCrop', crop_size=image_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]

# 8 videos per GPU -> 16 clips per batch with the 2 repeats (official
# --batch_size 8 --num_sample 2); drop_last as officially
train_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='repeat_pseudo_collate'),
    dataset=dict(
        type='VideoClsDataset',
        ann_file=ann_file_train,
        data_prefix=dict(video=data_root),
        num_classes=num_classes,
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='VideoClsDataset',
        ann_file=ann_file_val,
        data_prefix=dict(video=data_root),
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
        ann_file=ann_file_test,
        data_prefix=dict(video=data_root),
        num_classes=num_classes,
        pipeline=test_pipeline,
        test_mode=True))
val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator

# Learning rate. The official code scales its --lr by the clips per
# optimizer step: lr * batch_size * update_freq * world_size * num_sample
# / 256. For UCF101: 5e-3 * (8 * 1 * 4 GPUs * 2 repeats = 64) / 256.
# These are the ACTUAL values for that global batch of 64 clips; with
# another number of GPUs scale them yourself or use --auto-scale-lr
# (auto_scale_lr below counts videos per iteration: 8 x 4 GPUs).
num_epochs = 10
warmup_epochs = 5
peak_lr = 1.25e-3  # 5e-3 * 64 / 256
warmup_lr = 2.5e-7  # official --warmup_lr 1e-6, scaled the same way
min_lr = 2.5e-7  # official --min_lr 1e-6, scaled the same way
accumulative_counts = 1  # official --update_freq

optim_wrapper = dict(
    optimizer=dict(lr=peak_lr), accumulative_counts=accumulative_counts)
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=warmup_lr / peak_lr,
        end_factor=1.0,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=min_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=num_epochs,
        T_max=num_epochs - warmup_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(
    type='EpochBasedTrainLoop',
    max_epochs=num_epochs,
    val_begin=1,
    val_interval=1)
auto_scale_lr = dict(enable=False, base_batch_size=32)

# every trainable tensor (SSP, norm_f, head) is in the graph at every step
find_unused_parameters = False
default_hooks = dict(
    checkpoint=dict(interval=1, max_keep_ckpts=1, save_best='auto'))
# official seed 0; UCF101 runs with --fix_seed: every rank seeded 0
randomness = dict(seed=0, diff_rank_seed=False)
