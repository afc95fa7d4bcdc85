# Text-video retrieval data for STOP, read as the official loaders do: the
# loaders and the metric shared by configs/stop_clip_{msrvtt,vatex,
# activitynet,didemo}.py. Each of them sets the annotation files and video
# folder of both datasets, its pipelines (frames and tokens differ per
# dataset), the training batch size and how captions are read
# (``caption_mode`` / ``paragraph``).
train_dataloader = dict(
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='VideoTextRetrievalDataset'))
# Official-mode video features depend on the other videos of the batch (the
# inter-frame scores are min-max normalised over every frame of the batch):
# evaluation always uses this fixed batch size (official: 16, on one
# process, in dataset order; the model logs it at every evaluation). Every
# caption of a test video is a text query.
val_dataloader = dict(
    batch_size=16,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='VideoTextRetrievalDataset', caption_mode='all', test_mode=True))
test_dataloader = val_dataloader

val_evaluator = dict(type='VideoTextRetrievalMetric')
test_evaluator = val_evaluator
