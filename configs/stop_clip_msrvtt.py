# STOP (CVPR 2025) text-video retrieval on MSR-VTT, official recipe of
# scripts/msrvtt.sh (commit 7253928):
# 9k training videos with all 20 captions unfolded (180k pairs per epoch),
# 1k-A (JSFusion) test, 12 frames, 32 tokens, DGL 'transformer' prompt
# generator, 32 videos per GPU x 4 GPUs = 128 all-gathered for the symmetric
# InfoNCE, 5 epochs, AdamW lr 1e-3, 10 % warm-up from 1e-8 then cosine to
# 1e-8 per iteration, clipping at 1.0, test batch 16, evaluated after every
# epoch on the test split (as the official main.py does).
#
# Data (docs/retrieval.md): videos at 3 fps, short side 224, in
# data/msrvtt/videos; annotations from
#   python tools/data/msrvtt/convert_annotations.py \
#       --data-json MSRVTT_data.json --train-csv MSRVTT_train.9k.csv \
#       --test-csv MSRVTT_JSFUSION_test.csv --out-dir data/msrvtt/annotations
#
#   bash tools/dist_train.sh configs/stop_clip_msrvtt.py 4
#   bash tools/dist_test.sh configs/stop_clip_msrvtt.py CHECKPOINT 1
#
# The global batch of the loss is batch_size x number of processes: keep
# 128. Under DDP the official gather ('local') steps with 1/world_size of
# the full-batch gradient, so clip_grad max_norm=1.0 acts as 4.0 on the
# full-batch gradient with 4 processes; with another number of processes W'
# use max_norm = 4 / W' to keep the official dynamics (see
# mmstop/models/similarity/stop_similarity.py).
_base_ = [
    './_base_/default_runtime.py',
    './_base_/models/stop_clip_vit-b32.py',
    './_base_/datasets/stop_video_text.py',
    './_base_/schedules/stop_adamw.py',
]
custom_imports = dict(imports=['mmstop'], allow_failed_imports=False)
# re-derives the config from overridden top-level variables before building
# (README, "Configs: what to change")
runner_type = 'ResolvedConfigRunner'

num_frames = 12
image_size = 224
context_length = 32
data_root = 'data/msrvtt/videos'
ann_file_train = 'data/msrvtt/annotations/msrvtt_train_9k.json'
ann_file_test = 'data/msrvtt/annotations/msrvtt_test_1k.json'

model = dict(
    type='STOPSimilarity',
    backbone=dict(
        num_frames=num_frames,
        arch=dict(image_size=image_size),
        prompt_generator='transformer'),
    # official CLIP4Clip gather: only the local rows keep their gradient;
    # 'exact' gives the single-process full-batch gradient under DDP
    gather_grad='local',
    data_preprocessor=dict(format_shape='NCHW'))

train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    # official multi_segments_sampling (TSN random shift)
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=False),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackVideoTextInputs')
]
test_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    # official uniform_sampling (segment centres)
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, image_size)),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='TokenizeText', context_length=context_length),
    dict(type='PackVideoTextInputs')
]

train_dataloader = dict(
    batch_size=32,  # per GPU; x 4 GPUs = 128 gathered
    dataset=dict(
        ann_file=ann_file_train,
        data_prefix=dict(video=data_root),
        caption_mode='unfold',  # all 20 captions per video, 180k pairs
        pipeline=train_pipeline))
# evaluation batch fixed at 16: see configs/_base_/datasets/stop_video_text.py
val_dataloader = dict(
    dataset=dict(
        ann_file=ann_file_test,
        data_prefix=dict(video=data_root),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

max_epochs = 5
base_lr = 1e-3
train_cfg = dict(
    type='EpochBasedTrainLoop',
    max_epochs=max_epochs,
    val_begin=1,
    val_interval=1)
optim_wrapper = dict(optimizer=dict(lr=base_lr))
param_scheduler = [
    # official warm-up over 10 % of the iterations:
    # lr = 1e-8 + (step / warm) * (lr - 1e-8)
    dict(
        type='LinearLR',
        start_factor=1e-8 / base_lr,
        by_epoch=True,
        begin=0,
        end=0.1 * max_epochs,
        convert_to_iter_based=True),
    # then cosine to 1e-8, per iteration
    dict(
        type='CosineAnnealingLR',
        eta_min=1e-8,
        by_epoch=True,
        begin=0.1 * max_epochs,
        end=max_epochs,
        T_max=0.9 * max_epochs,
        convert_to_iter_based=True),
]
# the intra-frame region scorer is trainable but receives no gradient (hard
# top-k), as in the official code
find_unused_parameters = True
auto_scale_lr = dict(enable=False, base_batch_size=128)
default_hooks = dict(
    logger=dict(interval=50),  # official n_display
    checkpoint=dict(
        interval=1,
        max_keep_ckpts=2,
        save_best='retrieval/t2v/R@1',
        rule='greater'))
