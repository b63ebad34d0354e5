"""The web page for separating songs (`python -m keras_unet.app`).

    jobs.py    the queue: one worker thread separating uploads in turn
    webapp.py  the Flask application and its JSON API
    static/    the page's HTML, script and style sheet (package data)
"""
