# STOP action recognition on Something-Something V2; UCF101's recipe (see
# configs/stop_clip_ucf101.py for the assumptions) except: no horizontal flip
# (several SSv2 classes are defined by left/right) and 10 epochs (1,320
# iterations per epoch at batch 128).
#
#   bash tools/dist_train.sh configs/stop_clip_ssv2.py 8
_base_ = ['./stop_clip_ucf101.py']

num_frames = 12
data_root = 'data/sthv2/videos'
ann_file_train = 'data/sthv2/sthv2_train_list_videos.txt'
ann_file_val = 'data/sthv2/sthv2_val_list_videos.txt'
classnames_file = 'data/sthv2/classnames.txt'  # tools/data/build_classnames.py

model = dict(cls_head=dict(class_names=classnames_file))
train_pipeline = [
    dict(type='DecordInit', io_backend='disk'),
    dict(type='SegmentSampleFrames', num_segments=num_frames, test_mode=False),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 224)),
    dict(type='CenterCrop', crop_size=224),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs')
]
train_dataloader = dict(
    dataset=dict(
        ann_file=ann_file_train,
        data_prefix=dict(video=data_root),
        classnames_file=classnames_file,
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        ann_file=ann_file_val,
        data_prefix=dict(video=data_root),
        classnames_file=classnames_file))
test_dataloader = dict(
    dataset=dict(
        ann_file=ann_file_val,
        data_prefix=dict(video=data_root),
        classnames_file=classnames_file))

max_epochs = 10
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=True, begin=0,
         end=0.1 * max_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-8, by_epoch=True,
         begin=0.1 * max_epochs, end=max_epochs, T_max=0.9 * max_epochs,
         convert_to_iter_based=True),
]
