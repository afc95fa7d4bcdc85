# Built-in demo in paper mode: configs/stop_clip_demo.py (tiny random CLIP,
# synthetic motion classes, CPU) with the paper's token-space intra prompts
# and frame-difference inter prompts (configs/stop_clip_paper_ucf101.py
# explains both). The demo's smaller kernels and disabled dropout are tuned
# for the official pixel prompter (the paper module's kernels act on
# tokens), so the intra prompt is replaced whole (``_delete_``) by the paper
# module with its defaults.
#
#   python tools/run_demo.py --config configs/stop_clip_paper_demo.py
_base_ = ['./stop_clip_demo.py']

model = dict(
    backbone=dict(
        intra_prompt=dict(_delete_=True, mode='paper'),
        inter_prompt=dict(mode='paper')))
work_dir = './work_dirs/stop_clip_paper_demo'
