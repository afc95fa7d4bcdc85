# STOP action recognition on HMDB51 with the paper's prompt mechanisms: the
# recipe of configs/stop_clip_hmdb51.py with the intra and inter prompts of
# configs/stop_clip_paper_ucf101.py (read its header).
#
#   bash tools/dist_train.sh configs/stop_clip_paper_hmdb51.py 8
_base_ = ['./stop_clip_hmdb51.py']

model = dict(
    backbone=dict(
        intra_prompt=dict(mode='paper'), inter_prompt=dict(mode='paper')))
