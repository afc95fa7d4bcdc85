# STOP action recognition on Something-Something V2 with the paper's prompt
# mechanisms: the recipe of configs/stop_clip_ssv2.py (no horizontal flip)
# with the intra and inter prompts of configs/stop_clip_paper_ucf101.py (read
# its header).
#
#   bash tools/dist_train.sh configs/stop_clip_paper_ssv2.py 8
_base_ = ['./stop_clip_ssv2.py']

model = dict(
    backbone=dict(
        intra_prompt=dict(mode='paper'), inter_prompt=dict(mode='paper')))
