# STOP action recognition on HMDB51 split 1; same recipe as UCF101 (see
# configs/stop_clip_ucf101.py for the assumptions), horizontal flip
# included: no HMDB51 class depends on left/right.
#
#   bash tools/dist_train.sh configs/stop_clip_hmdb51.py 8
_base_ = ['./stop_clip_ucf101.py']

data_root = 'data/hmdb51/videos'
ann_file_train = 'data/hmdb51/hmdb51_train_split_1_videos.txt'
ann_file_val = 'data/hmdb51/hmdb51_val_split_1_videos.txt'
# made by tools/data/build_classnames.py
classnames_file = 'data/hmdb51/classnames.txt'

model = dict(cls_head=dict(class_names=classnames_file))
train_dataloader = dict(
    dataset=dict(
        ann_file=ann_file_train,
        data_prefix=dict(video=data_root),
        classnames_file=classnames_file))
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
