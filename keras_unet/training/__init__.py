"""Training: a run from a `RunConfig` to checkpoints, history and an exported model.

    run.py        a training run: devices, strategy, data, model, callbacks, outputs
    callbacks.py  checkpoints, history, validation SI-SDR, TensorBoard summaries
"""
