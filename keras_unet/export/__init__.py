"""Export: a trained model as a SavedModel that TensorFlow alone can run.

    saved_model.py  the mask and separate signatures, the config inside, TFLite
    folder.py       which folders an export may replace (no TensorFlow: checked first)
"""
