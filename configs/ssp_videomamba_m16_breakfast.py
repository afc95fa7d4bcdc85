# SSP on a frozen VideoMamba-M, Breakfast (10 activities): sh/Breakfast.sh.
# Recipe of configs/ssp_videomamba_m16_ucf101.py (read its header for the
# augmentations and what is approximated; the horizontal flip stays: no
# Breakfast activity depends on left/right) except:
# 32 frames from the 32-frame K400 checkpoint, sparse (segment) sampling,
# 2 videos per GPU with 8 accumulation steps (128 clips per update), base lr
# 1e-3, 20 epochs, 8 x 6 test views, per-rank seeds.
# Paper: 93.23 top-1.
#
#   bash tools/dist_train.sh configs/ssp_videomamba_m16_breakfast.py 4
#   bash tools/dist_test.sh configs/ssp_videomamba_m16_breakfast.py \
#       work_dirs/ssp_videomamba_m16_breakfast/best_acc_top1_epoch_*.pth 4
#
# Sampling (official VideoClsDataset_sparse = MMAction2's UniformSample,
# exact): 32 segments of (n - 1) / 32 frames; train a random frame in
# [round(seg i), round(seg (i + 1))], test view k the frame
# round(seg i) + int(seg / (S + 1) (k + 1)), val the same with S = 1.
_base_ = ['./ssp_videomamba_m16_ucf101.py']

num_classes = 10
num_frames = 32
image_size = _base_.image_size
pretrained_checkpoint = \
    'data/pretrained/videomamba_m16_k400_mask_ft_f32_res224.pth'
data_root = 'data/breakfast/videos'
ann_file_train = 'data/breakfast/breakfast_train_list_videos.txt'
ann_file_val = 'data/breakfast/breakfast_test_list_videos.txt'
ann_file_test = ann_file_val

model = dict(
    backbone=dict(num_frames=num_frames, pretrained=pretrained_checkpoint),
    cls_head=dict(num_classes=num_classes),
    data_preprocessor=dict(
        blending=dict(augments=[
            dict(type='MixupBlending', alpha=0.8, num_classes=num_classes),
            dict(type='CutmixBlending', alpha=1.0, num_classes=num_classes)
        ])),
    # 48 views of 32 frames: run them 6 at a time (the SSP frame importance
    # takes its entropy max over each chunk; the official test batches 2
    # views per GPU, the effect is at round-off level)
    test_cfg=dict(max_testing_views=6))

train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='UniformSample', clip_len=num_frames, num_clips=1),
    dict(type='DecordDecode'),
    # UCF101's per-clip augmentation, twice per decoded video
    dict(
        type='RepeatedAugment', num_repeats=2, transforms=_base_.clip_augment)
]
val_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(
        type='UniformSample', clip_len=num_frames, num_clips=1,
        test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(
        type='UniformSample', clip_len=num_frames, num_clips=8,
        test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='LongSideCrops', crop_size=image_size, num_crops=6),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
dataset = dict(data_prefix=dict(video=data_root), num_classes=num_classes)
train_dataloader = dict(
    batch_size=2,
    dataset=dict(ann_file=ann_file_train, pipeline=train_pipeline, **dataset))
val_dataloader = dict(
    batch_size=2,
    dataset=dict(ann_file=ann_file_val, pipeline=val_pipeline, **dataset))
test_dataloader = dict(
    dataset=dict(ann_file=ann_file_test, pipeline=test_pipeline, **dataset))

# official: lr 1e-3 * (2 videos x 8 update_freq x 4 GPUs x 2 repeats = 128)
# / 256; warmup_lr = min_lr = 1e-6 * 128 / 256
peak_lr = 5e-4
warmup_lr = 5e-7
min_lr = 5e-7
accumulative_counts = 8
num_epochs = 20
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
auto_scale_lr = dict(base_batch_size=8)  # 2 videos x 4 GPUs
randomness = dict(seed=0, diff_rank_seed=True)
