"""Applications: what the command lines run, on the core and the input pipeline.

    training.py    a training run: devices, strategy, data, model, callbacks, outputs
    callbacks.py   checkpoints, history, validation SI-SDR, TensorBoard summaries
    figures.py     spectrogram figures (separate.py --plot, TensorBoard)
    precision.py   which precision a machine should use; a model rebuilt under another
    full_band.py   the model's mask on the input's own rate: full-band vocals
    separator.py   a song streamed through the model in blocks (`Separator`)
    writing.py     vocals and accompaniment written to disk, summing to the input
    song_files.py  one song file separated into files and a figure (separate.py, the web page)
    jobs.py        the web page's queue: one worker thread separating uploads in turn
    webapp.py      the web page: a Flask application (its HTML, script and style in web/)
    export.py      SavedModel export (mask and separate signatures, TFLite)
    evaluation.py  BSS Eval scoring against the mixture and oracle baselines
"""
