# The retrieval demo on mmstop's tiny pretrained CLIP
# (checkpoints/README.md: a 4-layer ViT of width 128 on 32 x 32 frames and a
# 4-layer text transformer, pretrained contrastively on captions of still
# images of shapes): STOP (official mode) trained and tested on the captions
# of the synthetic motion dataset of the default job (6 motions, colour and
# shape drawn per video; captions such as 'a red square moving up'). The
# CLIP reads the colour and shape words of a caption; the motion words are
# new to it and only the prompts trained here can tie them to the motion.
#
#   python tools/data/generate_demo_dataset.py data/motion --num-classes 6 \
#       --train-per-class 32 --val-per-class 16 --appearance random
#   python tools/train.py configs/stop_clip_retrieval_motion.py
#   python tools/test.py configs/stop_clip_retrieval_motion.py \
#       work_dirs/stop_clip_retrieval_motion/epoch_5.pth
#   python tools/retrieval_demo.py embed \
#       configs/stop_clip_retrieval_motion.py \
#       work_dirs/stop_clip_retrieval_motion/epoch_5.pth data/motion/videos \
#       --out work_dirs/motion_videos.pt
#   python tools/retrieval_demo.py query work_dirs/motion_videos.pt \
#       "a red square"
#
# Everything else is configs/stop_clip_retrieval_demo.py.
_base_ = ['./stop_clip_retrieval_demo.py']

num_frames = 8
image_size = 32
context_length = 32
# the tiny CLIP's published-format checkpoint, beside the configs
clip_checkpoint = '{{ fileDirname }}/../checkpoints/tiny_clip_shapes.pth'
data_root = 'data/motion/videos'
ann_file_train = 'data/motion/captions_train.json'
ann_file_test = 'data/motion/captions_val.json'
# the arch tools/pretrain/tiny_clip.py trains (mmstop's CLIP arch table)
clip_arch = dict(
    base='tiny-shapes', image_size=image_size, context_length=context_length)

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, **clip_arch), pretrained=clip_checkpoint))

# one caption drawn per video and epoch: 192 pairs an epoch
train_dataloader = dict(
    batch_size=8,
    dataset=dict(
        ann_file=ann_file_train,
        caption_mode='random',
        data_prefix=dict(video=data_root)))
# fixed evaluation batch size (official-mode features depend on the batch);
# every caption of a test video is a query
test_dataloader = dict(
    dataset=dict(ann_file=ann_file_test, data_prefix=dict(video=data_root)))
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
default_hooks = dict(checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
work_dir = './work_dirs/stop_clip_retrieval_motion'
