# Built-in demo: SSP on a tiny random VideoMamba, trained and tested on the
# synthetic dataset that mmstop generates itself. No downloads, CPU only,
# about a minute of training on one core (measured 58 s with
# OMP_NUM_THREADS=1; use it on a busy machine: 2 OpenMP threads stall when
# the other core is taken). ``python tools/run_demo.py --config
# configs/ssp_videomamba_demo.py`` does all three steps:
#
#   python tools/data/generate_demo_dataset.py data/demo
#   python tools/train.py configs/ssp_videomamba_demo.py
#   python tools/test.py configs/ssp_videomamba_demo.py \
#       work_dirs/ssp_videomamba_demo/epoch_6.pth
#
# Everything but the sizes is the UCF101 recipe of
# configs/ssp_videomamba_m16_ucf101.py: frozen backbone with SSP prompts
# (P = 3), repeated augmentation x2, RandAugment, random resized crop,
# random erasing, mixup/cutmix with label smoothing, AdamW with the official
# no-decay rule, linear warm-up then per-iteration cosine, multi-view test
# (2 temporal windows x 3 crops, probabilities averaged). Differences: no
# horizontal flip (the demo generator's 'moving left' / 'moving right'
# classes, num_classes > 4, swap under a flip), VideoMamba-tiny (24 layers,
# width 192) from random weights (no checkpoint), 32 x 32 frames with 8 x 8
# patches, 4 frames at stride 2, smaller SSP modules (hidden and attention
# width 32), fp32 on the CPU instead of bf16, 6 epochs (1 warm-up),
# validation only after the last epoch.
#
# It checks that the recipe runs end to end; expect CHANCE-LEVEL top-1
# (about 25 %). SSP adapts a pretrained backbone, and a random VideoMamba
# with the official init is nearly the identity: its mixer outputs are about
# 1 % of the embeddings, so the CLS feature hardly depends on the video, and
# a few dozen augmented, mixed-up steps on 16 videos do not get past that.
_base_ = ['./ssp_videomamba_m16_ucf101.py']

num_classes = 4
num_frames = 4
image_size = 32
resize_short = image_size * 5 // 4  # short side before the evaluation crops
embed_dims = 192  # VideoMamba-tiny
data_root = 'data/demo/videos'
ann_file_train = 'data/demo/train.txt'
ann_file_val = 'data/demo/val.txt'
ann_file_test = ann_file_val
pretrained_checkpoint = None

model = dict(
    backbone=dict(
        arch='tiny',
        img_size=image_size,
        patch_size=8,
        num_frames=num_frames,
        drop_path_rate=0.1,
        ssp=dict(hidden_dims=32, attn_dims=32, num_heads=4),
        pretrained=pretrained_checkpoint),
    cls_head=dict(num_classes=num_classes, in_channels=embed_dims),
    data_preprocessor=dict(
        blending=dict(augments=[
            dict(type='MixupBlending', alpha=0.8, num_classes=num_classes),
            dict(type='CutmixBlending', alpha=1.0, num_classes=num_classes)
        ])))

img_mean = [123.675, 116.28, 103.53]
img_std = [58.395, 57.12, 57.375]
clip_augment = [
    dict(
        type='TorchVisionWrapper',
        op='RandAugment',
        num_ops=4,
        magnitude=7,
        num_magnitude_bins=11,
        interpolation=2),
    dict(
        type='RandomResizedCrop',
        area_range=(0.08, 1.0),
        aspect_ratio_range=(3 / 4, 4 / 3)),
    dict(type='Resize', scale=(image_size, image_size), keep_ratio=False),
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
        frame_interval=2,
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
        frame_interval=2,
        num_clips=1,
        test_mode=True,
        out_of_bound_opt='repeat_last'),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, resize_short)),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(
        type='SampleFrames',
        clip_len=num_frames,
        frame_interval=2,
        num_clips=2,
        test_mode=True,
        out_of_bound_opt='repeat_last'),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, resize_short)),
    dict(type='LongSideCrops', crop_size=image_size, num_crops=3),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
dataset = dict(data_prefix=dict(video=data_root), num_classes=num_classes)
loader = dict(num_workers=0, persistent_workers=False)
train_dataloader = dict(
    batch_size=4,
    dataset=dict(ann_file=ann_file_train, pipeline=train_pipeline, **dataset),
    **loader)
val_dataloader = dict(
    batch_size=4,
    dataset=dict(ann_file=ann_file_val, pipeline=val_pipeline, **dataset),
    **loader)
test_dataloader = dict(
    batch_size=1,
    dataset=dict(ann_file=ann_file_test, pipeline=test_pipeline, **dataset),
    **loader)

num_epochs = 6
warmup_epochs = 1
peak_lr = 5e-3
warmup_lr = 1e-5
min_lr = 1e-5
# fp32 (CPU): a plain OptimWrapper with the recipe's AdamW and no-decay rule
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW',
        lr=peak_lr,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0.05),
    paramwise_cfg=dict(
        flat_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'pos_embed': dict(decay_mult=0.0),
            'cls_token': dict(decay_mult=0.0),
        }))
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
train_cfg = dict(max_epochs=num_epochs, val_interval=num_epochs)
auto_scale_lr = dict(base_batch_size=4)
default_hooks = dict(
    logger=dict(interval=4),
    checkpoint=dict(interval=num_epochs, max_keep_ckpts=1, save_best=None))
# nccl on GPUs (the default); mmstop/compat.py falls back to gloo where
# there is no CUDA
randomness = dict(seed=0, diff_rank_seed=False)
work_dir = './work_dirs/ssp_videomamba_demo'
