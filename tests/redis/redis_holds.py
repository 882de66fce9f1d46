"""Occupy the module's run thread on purpose, so tests can queue runs behind
it and know they are queued, without timing anything."""

import contextlib
import threading

from redis_servers import wait_until

HOLD_ROWS = 4


def blocked_clients(client):
    return client.info("clients")["blocked_clients"]


@contextlib.contextmanager
def worker_held(server, model_blob):
    """While inside, the one run thread waits on a run of a model with
    MINBATCHSIZE 4 and no MINBATCHTIMEOUT: it needs 3 more rows. Leaving sends
    them, which runs and releases it (and everything queued behind it)."""
    r = server.client()
    r.execute_command('AI.MODELSTORE', 'hold:model', 'TORCH', 'CPU', 'BATCHSIZE', HOLD_ROWS,
                      'MINBATCHSIZE', HOLD_ROWS, 'BLOB', model_blob)
    r.execute_command('AI.TENSORSET', 'hold:one', 'FLOAT', 1, 10)
    r.execute_command('AI.TENSORSET', 'hold:rest', 'FLOAT', HOLD_ROWS - 1, 10)
    before = blocked_clients(r)
    replies = []
    holder = threading.Thread(target=lambda: replies.append(server.client().execute_command(
        'AI.MODELEXECUTE', 'hold:model', 'INPUTS', 1, 'hold:one', 'OUTPUTS', 1, 'hold:out')))
    holder.start()
    wait_until(lambda: blocked_clients(r) == before + 1, "the holding run to block")
    try:
        yield
    finally:
        r.execute_command('AI.MODELEXECUTE', 'hold:model', 'INPUTS', 1, 'hold:rest', 'OUTPUTS', 1, 'hold:out2')
        holder.join(60)
    assert replies == [b'OK']
