# The default job's SSP model (tools/run_demo.py): SSP on mmstop's tiny
# pretrained VideoMamba (checkpoints/README.md: 6 layers of width 64 on
# 8 x 32 x 32 clips, pretrained supervised on procedural (shape, motion)
# clips whose classes differ from the downstream ones), trained and tested
# on the synthetic motion task of configs/stop_clip_motion.py (6 classes
# that only motion and temporal order tell apart). Frozen baseline on the
# same data: configs/videomamba_probe_motion.py (linear probe).
#
#   python tools/train.py configs/ssp_videomamba_motion.py
#   python tools/test.py configs/ssp_videomamba_motion.py \
#       work_dirs/ssp_videomamba_motion/epoch_20.pth
#
# Everything else is configs/ssp_videomamba_demo.py (frozen backbone, SSP
# P = 3, repeated augmentation, AdamW with warm-up + cosine, 2 x 3 test
# views) but the augmentation: the UCF101 recipe's RandAugment, random
# resized crop down to 8% of the area, random erasing and mixup / cutmix
# leave nothing of a 32-pixel motion, and with them SSP's training loss
# stayed at ln 6 (test top-1 32%, below the probe's 39%; measured). Here
# every repeat is a random 32-pixel crop of the frames resized to 40, with
# no mixing and no label smoothing, for 20 epochs; 8 frames at stride 2
# cover the 16-frame videos.
_base_ = ['./ssp_videomamba_demo.py']

num_classes = 6
num_frames = 8
image_size = 32
resize_short = image_size * 5 // 4
# arch of tools/pretrain/tiny_videomamba.py (ARCH, MODEL)
videomamba_arch = dict(embed_dims=64, depth=6)
d_state = 8
patch_size = 16
pretrained_checkpoint = \
    '{{ fileDirname }}/../checkpoints/tiny_videomamba_motion.pth'
data_root = 'data/motion/videos'
ann_file_train = 'data/motion/train.txt'
ann_file_val = 'data/motion/val.txt'
ann_file_test = ann_file_val

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **videomamba_arch),
        d_state=d_state,
        patch_size=patch_size,
        img_size=image_size,
        num_frames=num_frames,
        pretrained=pretrained_checkpoint),
    cls_head=dict(
        num_classes=num_classes,
        in_channels=videomamba_arch['embed_dims'],
        label_smooth_eps=0.0),
    data_preprocessor=dict(blending=None))

clip_augment = [
    dict(type='Resize', scale=(-1, resize_short)),
    dict(type='RandomCrop', size=image_size),
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
train_dataloader = dict(
    dataset=dict(ann_file=ann_file_train, pipeline=train_pipeline, **dataset))
val_dataloader = dict(
    dataset=dict(ann_file=ann_file_val, pipeline=val_pipeline, **dataset))
test_dataloader = dict(
    dataset=dict(ann_file=ann_file_test, pipeline=test_pipeline, **dataset))
num_epochs = 20
warmup_epochs = 1
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=_base_.warmup_lr / _base_.peak_lr,
        end_factor=1.0,
        by_epoch=True,
        begin=0,
        end=warmup_epochs,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        eta_min=_base_.min_lr,
        by_epoch=True,
        begin=warmup_epochs,
        end=num_epochs,
        T_max=num_epochs - warmup_epochs,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=num_epochs, val_interval=num_epochs)
default_hooks = dict(checkpoint=dict(interval=num_epochs))
work_dir = './work_dirs/ssp_videomamba_motion'
