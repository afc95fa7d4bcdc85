# SSP on a frozen VideoMamba-M, Something-Something V2: sh/SSV2.sh. Recipe
# of configs/ssp_videomamba_m16_ucf101.py (read its header for the
# augmentations and what is approximated) except: 174 classes, TSN segment
# sampling, NO horizontal flip (several SSv2 classes are defined by
# left/right, e.g. "Pushing something from left to right"), base lr 2e-4 with
# 16 accumulation steps (1,024 clips per update), 7 epochs (5 of them
# warm-up), 2 x 9 test views, per-rank seeds. The init checkpoint is still
# the K400 one (SSP does not use the SSv2 VideoMamba checkpoints).
# Paper: 53.72 top-1.
#
#   bash tools/dist_train.sh configs/ssp_videomamba_m16_ssv2.py 4
#   bash tools/dist_test.sh configs/ssp_videomamba_m16_ssv2.py \
#       work_dirs/ssp_videomamba_m16_ssv2/best_acc_top1_epoch_*.pth 4
#
# Sampling (official SSVideoClsDataset, exact for videos of > 8 frames):
# train one random frame per segment of n // 8 frames, val the segment
# centres (SegmentSampleFrames), test 2 interleaved views = the segment
# starts and the segment centres (SegmentViewSampleFrames) x 9 crops along
# the long side (LongSideCrops).
_base_ = ['./ssp_videomamba_m16_ucf101.py']

num_classes = 174
num_frames = _base_.num_frames
image_size = _base_.image_size
data_root = 'data/sthv2/videos'
ann_file_train = 'data/sthv2/sthv2_train_list_videos.txt'
ann_file_val = 'data/sthv2/sthv2_val_list_videos.txt'
ann_file_test = ann_file_val  # the SSv2 test labels are not public

model = dict(
    cls_head=dict(num_classes=num_classes),
    data_preprocessor=dict(
        blending=dict(augments=[
            dict(type='MixupBlending', alpha=0.8, num_classes=num_classes),
            dict(type='CutmixBlending', alpha=1.0, num_classes=num_classes)
        ])))

# UCF101's per-clip augmentation without the horizontal flip
clip_augment = [t for t in _base_.clip_augment if t.type != 'Flip']
train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=False),
    dict(type='DecordDecode'),
    dict(type='RepeatedAugment', num_repeats=2, transforms=clip_augment)
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
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentViewSampleFrames', clip_len=num_frames, num_views=2),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='LongSideCrops', crop_size=image_size, num_crops=9),
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

# official: lr 2e-4 * (8 videos x 16 update_freq x 4 GPUs x 2 repeats
# = 1024) / 256; warmup_lr = min_lr = 1e-6 * 1024 / 256
peak_lr = 8e-4
warmup_lr = 4e-6
min_lr = 4e-6
accumulative_counts = 16
num_epochs = 7
warmup_epochs = 5
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
train_cfg = dict(max_epochs=num_epochs)
randomness = dict(seed=0, diff_rank_seed=True)
