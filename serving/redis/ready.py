"""When a Redis server is ready: it answers PING. One check for the bench and the tests."""

import redis

# What a server that is still starting (or loading its data) raises.
NOT_YET = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def answers_ping(client):
    """True once `client`'s server answers PING; False while it is not up yet."""
    try:
        return client.ping()
    except NOT_YET:
        return False
