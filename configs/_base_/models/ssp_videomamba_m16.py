# SSP (NeurIPS 2025) on VideoMamba-M, as the official scripts build it:
# VideoMamba 'middle' (576 wide, 32 layers), patch 16, tubelet 1, 224x224, 8
# frames, drop path 0.4 (active in training although the backbone is
# frozen), SSP with P = 3 prompt tokens per frame, IFG width 384, prompt
# attention width 256 (8 heads), 1x1x1 local conv and the batch-wide entropy
# max (official). Only SSP, norm_f and the head train.
#
# The backbone starts from the K400 fine-tuned, mask-pretrained VideoMamba-M;
# its 400-class head is not part of the backbone, so the new head keeps its
# init (trunc-normal 0.02, bias 0), as officially.
#
# The head, both blending augments and the backbone derive from the
# variables below. MMEngine evaluates them when it parses each file, so a
# child that sets one in its file re-assigns every field that uses it; on
# the command line ``--cfg-options num_classes=...`` alone re-derives them
# all (mmstop.engine.ResolvedConfigRunner).
num_classes = 101
num_frames = 8
image_size = 224
pretrained_checkpoint = \
    'data/pretrained/videomamba_m16_k400_mask_ft_f8_res224.pth'

model = dict(
    type='Recognizer3D',
    backbone=dict(
        type='VideoMamba',
        arch='middle',
        img_size=image_size,
        patch_size=16,
        num_frames=num_frames,
        tubelet_size=1,
        drop_path_rate=0.4,
        ssp=dict(
            num_prompts=3,
            hidden_dims=384,
            attn_dims=256,
            num_heads=8,
            kernel_size=(1, 1, 1),
            entropy_max='batch'),
        freeze_backbone=True,
        scan_impl='auto',  # mamba_ssm CUDA kernel when installed
        pretrained=pretrained_checkpoint),
    # a linear classifier on the normed CLS feature; label smoothing 0.1 is
    # applied to the (mixed) soft targets: (1 - 0.1) * y + 0.1 / K, which
    # equals timm's smoothed-then-mixed targets
    cls_head=dict(
        type='TimeSformerHead',
        num_classes=num_classes,
        in_channels=576,
        dropout_ratio=0.0,  # official fc_drop_rate 0
        init_std=0.02,
        label_smooth_eps=0.1,
        # multi-view test: softmax per view, probabilities averaged
        average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        # ImageNet statistics on 0-255 pixels
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        format_shape='NCTHW',
        # timm Mixup(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0,
        # switch_prob=0.5, mode='batch'): every training batch is either
        # mixed up or cut-mixed, each with probability 0.5
        blending=dict(
            type='RandomBatchAugment',
            augments=[
                dict(type='MixupBlending', alpha=0.8, num_classes=num_classes),
                dict(
                    type='CutmixBlending', alpha=1.0, num_classes=num_classes)
            ],
            probs=[0.5, 0.5])))
