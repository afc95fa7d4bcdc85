# STOP action recognition on UCF101 with the paper's prompt mechanisms
# instead of the released code's: the recipe of configs/stop_clip_ucf101.py
# (read its header for the assumptions) with
# * intra_prompt mode='paper' (TokenIntraFramePrompt, paper equations 2-7):
#   prompts on the patch tokens before the attention of every layer, added
#   to the num_regions patches per frame with the highest score
#   alpha * A + (1 - alpha) * M (A: the layer's CLS attention, M: a 3D-conv
#   score of the temporal dynamics);
# * inter_prompt mode='paper' (DynamicInterFramePrompt, equations 8-12):
#   frame-difference tokens, a beta-weighted variation score W per frame gap
#   and ceil(eta * W) prompt tokens for it (clamped to [min_prompts,
#   max_prompts]).
# Both use the modules' default options (README, "STOP paper mode", lists
# them; set any with --cfg-options model.backbone.intra_prompt.<option>=...).
# No reference numbers exist for this mode. Neither module couples the
# videos of a batch, so evaluation results do not depend on its batch size.
#
#   bash tools/dist_train.sh configs/stop_clip_paper_ucf101.py 8
_base_ = ['./stop_clip_ucf101.py']

model = dict(
    backbone=dict(
        intra_prompt=dict(mode='paper'), inter_prompt=dict(mode='paper')))
