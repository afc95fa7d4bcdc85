# Frozen baseline of the default job (tools/run_demo.py): a linear probe of
# the tiny pretrained CLIP on the synthetic motion task of
# configs/stop_clip_motion.py. The frozen image tower encodes every frame,
# the L2-normalised frame embeddings are averaged (CLIPFrameEncoder), and
# only a linear classifier on that feature trains (MMAction2's
# Recognizer3D with a TimeSformerHead), with the STOP demo's data, schedule
# and AdamW.
#
#   python tools/train.py configs/clip_probe_motion.py
#   python tools/test.py configs/clip_probe_motion.py \
#       work_dirs/clip_probe_motion/epoch_10.pth
_base_ = ['./stop_clip_motion.py']

model = dict(
    _delete_=True,
    type='Recognizer3D',
    backbone=dict(
        type='CLIPFrameEncoder',
        arch=_base_.clip_arch,
        pretrained=_base_.clip_checkpoint),
    cls_head=dict(
        type='TimeSformerHead',
        num_classes=_base_.num_classes,
        in_channels=_base_.clip_arch['embed_dims'],
        init_std=0.02,
        average_clips='prob'),
    data_preprocessor=_base_.model.data_preprocessor)
# the head learns from scratch: a larger step than the prompts'
optim_wrapper = dict(optimizer=dict(lr=1e-2))
find_unused_parameters = False
work_dir = './work_dirs/clip_probe_motion'
