"""The web page for separating songs (`python -m keras_unet.app`).

    jobs.py    the queue: one worker thread separating uploads in turn
    models.py  the models the page offers and accepts, described in words
    files.py   names safe to show and save, the mix for the player, FLAC copies
    webapp.py  the Flask application and its JSON API
    static/    the page's HTML, script and style sheet (package data)
"""
