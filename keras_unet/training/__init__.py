"""Training: a run from a `RunConfig` to checkpoints, history and an exported model.

    run.py        a training run: devices, strategy, data, model, callbacks, outputs
    callbacks.py  checkpoints, history, validation SI-SDR, TensorBoard summaries
    run_folder.py what a run folder holds, when it may change, which backup resumes
"""
