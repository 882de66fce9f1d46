"""The ways of serving FizBuzNet, a room each: mms (MXNet Model Server), flask
(the Flask + gunicorn baseline), front (the nginx front door and the local
fleet), redis (the RedisAI-compatible module), metrics (Prometheus)."""
