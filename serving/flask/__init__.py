"""The seed's first serving path: FizBuzNet in PyTorch behind Flask and gunicorn."""
