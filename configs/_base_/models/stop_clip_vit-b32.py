# The official STOP model of scripts/msrvtt.sh (commit 7253928; spec stop.md
# section 2): a frozen OpenAI CLIP ViT-B/32, 12 frames, DGL 'transformer'
# prompt generator, official intra (pixel) and inter (attentive) prompts,
# adapters in every block, first-global-token pooling.
#
# Children choose the task by setting ``model.type`` (``STOPRecognizer`` for
# action recognition) and the task's head / data preprocessor layout.
clip_checkpoint = 'data/pretrained/ViT-B-32.pt'  # OpenAI TorchScript archive

model = dict(
    backbone=dict(
        type='STOPCLIP',
        arch='vit-b32',
        num_frames=12,
        prompt_generator='transformer',
        num_global_prompts=4,
        num_local_prompts=4,
        num_text_prompts=8,
        text_postfix_prompts=True,
        intra_prompt=dict(mode='official', num_regions=6,
                          mask_pooling='residue'),
        inter_prompt=dict(mode='official', normalize='batch'),
        adapter=dict(hidden_dims=32, scale=0.1),
        pool='global0',
        pretrained=clip_checkpoint),
    # CLIP's normalisation on 0-255 pixels
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[122.770938, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305]))
