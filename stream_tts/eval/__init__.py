"""Measuring the pipeline's output quality on your own weights (`stream-tts eval ...`)."""
