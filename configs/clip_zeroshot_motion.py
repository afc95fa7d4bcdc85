# Frozen baseline of the default job (tools/run_demo.py): zero-shot CLIP on
# the synthetic motion task of configs/stop_clip_motion.py. The tiny
# pretrained CLIP encodes every frame; the L2-normalised frame embeddings are
# averaged into the video feature (CLIPFrameEncoder), which is scored by
# cosine against CLIP's text features of the class names (STOPRecognizer's
# TextClassifierHead, CLIP's own temperature). Nothing is trained: test it
# without a checkpoint, the backbone loads the CLIP weights itself.
#
#   python tools/test.py configs/clip_zeroshot_motion.py
_base_ = ['./stop_clip_motion.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='CLIPFrameEncoder',
        arch=_base_.clip_arch,
        pretrained=_base_.clip_checkpoint))
work_dir = './work_dirs/clip_zeroshot_motion'
