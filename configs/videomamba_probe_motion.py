# Frozen baseline of the default job (tools/run_demo.py): a linear probe of
# the tiny pretrained VideoMamba on the synthetic motion task, i.e.
# configs/ssp_videomamba_motion.py without SSP: the backbone is frozen but
# its final norm, and the linear head trains, with the same data,
# augmentation, schedule and optimiser as SSP.
#
#   python tools/train.py configs/videomamba_probe_motion.py
_base_ = ['./ssp_videomamba_motion.py']

model = dict(backbone=dict(ssp=None, freeze_backbone=True))
work_dir = './work_dirs/videomamba_probe_motion'
