# STOP action recognition on Something-Something V2; UCF101's recipe (see
# configs/stop_clip_ucf101.py for the assumptions) except: no horizontal flip
# (several SSv2 classes are defined by left/right) and 10 epochs (1,320
# iterations per epoch at batch 128).
#
#   bash tools/dist_train.sh configs/stop_clip_ssv2.py 8
_base_ = ['./stop_clip_ucf101.py']

data_root = 'data/sthv2/videos'
ann_file_train = 'data/sthv2/sthv2_train_list_videos.txt'
ann_file_val = 'data/sthv2/sthv2_val_list_videos.txt'
classnames_file = 'data/sthv2/classnames.txt'  # tools/data/build_classnames.py

model = dict(cls_head=dict(class_names=classnames_file))
# UCF101's training pipeline without the horizontal flip
train_pipeline = [t for t in _base_.train_pipeline if t.type != 'Flip']
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
