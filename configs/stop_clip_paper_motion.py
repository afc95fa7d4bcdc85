# The default job's STOP model in paper mode: configs/stop_clip_motion.py
# (tiny pretrained CLIP, synthetic motion task) with the paper's token-space
# intra prompts and frame-difference inter prompts, as
# configs/stop_clip_paper_demo.py does for the random-CLIP demo.
#
#   python tools/train.py configs/stop_clip_paper_motion.py
_base_ = ['./stop_clip_motion.py']

model = dict(
    backbone=dict(
        intra_prompt=dict(_delete_=True, mode='paper'),
        inter_prompt=dict(mode='paper')))
work_dir = './work_dirs/stop_clip_paper_motion'
