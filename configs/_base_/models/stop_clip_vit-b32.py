# The official STOP model of the released MSR-VTT script (scripts/msrvtt.sh,
# commit 7253928): a frozen OpenAI CLIP ViT-B/32, 12 frames, DGL
# 'transformer' prompt generator, official intra (pixel) and inter
# (attentive) prompts, adapters in every block, first-global-token pooling.
#
# Children choose the task by setting ``model.type`` (``STOPRecognizer`` for
# action recognition) and the task's head / data preprocessor layout.
#
# mode='official' reproduces the released code with its quirks: the region
# mask pools the scores by pixel residue (``mask_pooling='residue'``) and the
# frame weights are min-max normalised over the whole batch
# (``normalize='batch'``). Both are the prompt modules' defaults and are not
# repeated here, so ``intra_prompt.mode=paper`` / ``inter_prompt.mode=paper``
# alone switch to the paper's mechanisms (configs/stop_clip_paper_*.py).
clip_checkpoint = 'data/pretrained/ViT-B-32.pt'  # OpenAI TorchScript archive
num_frames = 12
image_size = 224  # frame side; ViT-B/32's checkpoint is 224

model = dict(
    backbone=dict(
        type='STOPCLIP',
        arch=dict(base='vit-b32', image_size=image_size),
        num_frames=num_frames,
        prompt_generator='transformer',
        num_global_prompts=4,
        num_local_prompts=4,
        num_text_prompts=8,
        text_postfix_prompts=True,
        intra_prompt=dict(mode='official', num_regions=6),
        inter_prompt=dict(mode='official'),
        adapter=dict(hidden_dims=32, scale=0.1),
        pool='global0',
        pretrained=clip_checkpoint),
    # CLIP's normalisation on 0-255 pixels
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[122.770938, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305]))
