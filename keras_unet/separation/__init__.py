"""Separation: a song file in, its vocals and accompaniment files out, full band.

    separator.py   a song streamed through the model in blocks (`Separator`)
    song.py        a song read on demand at its own rate and at the model's
    stopwatch.py   time per stage of a separation, for `separate.py --timings`
    full_band.py   the model's mask on the input's own rate: full-band vocals
    writing.py     vocals and accompaniment written to disk, summing to the input
    song_files.py  one song file separated into files and a figure (separate.py, the web page)
    figures.py     spectrogram figures (separate.py --plot, TensorBoard, the web page)
"""
