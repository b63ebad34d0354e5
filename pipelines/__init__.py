"""Input side: audio files -> waveforms -> tf.data batches of spectrogram patches."""
