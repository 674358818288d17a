"""moto's server, with three speed fixes to its SQS that keep its behaviour.

Run as `python scripts/moto-server.py -H 127.0.0.1 -p PORT` (same arguments
as `moto_server`); scripts/local-stack.sh starts it this way. Set
MOTO_STOCK=1 to run moto exactly as released, e.g. to compare.

Why: moto 5.2.5 makes every SendMessage cost time proportional to the queue's
depth, squared in effect over a burst. `send_message` reads `queue.attributes`
only to see ContentBasedDeduplication, and that property also counts the
visible, delayed and in-flight messages by scanning the whole queue, calling
a datetime-based clock twice per message (~15 us each). Measured here: 2,000
sends into one queue took 43 s, the next 500 took 37 s; a 70,000-message
burst would spend about ten hours in moto alone. The local burst would then
measure moto, not the pipeline (BENCHMARKS.md, "Burst").

The fixes, each equivalent to what it replaces:
1. moto.sqs's clock (`unix_time`, `unix_time_millis` with no argument) reads
   time.time() instead of building two datetimes: same value, ~50x cheaper.
2. SendMessage and ReceiveMessage (which looks up MessageRetentionPeriod
   through GetQueueAttributes for every message it hands out) build
   `Queue.attributes` but read no message count from it, so while they run
   the three counts are not computed (reported as 0 to a caller that never
   reads them). GetQueueAttributes itself still counts, as in moto.
3. `Queue.delete_message` stops at the one message holding the receipt
   handle instead of scanning the queue twice and copying it.

Each fix checks that the code it wraps still looks as expected, so a moto
upgrade that moves things fails loudly at start instead of silently running
unpatched. tests/ run against this server, so the suite covers the fixes.
"""

import os
import sys
import threading
import time


def _patch_clock(models):
    originals = (models.unix_time, models.unix_time_millis)

    def unix_time(dt=None):
        return time.time() if dt is None else originals[0](dt)

    def unix_time_millis(dt=None):
        return time.time() * 1000.0 if dt is None else originals[1](dt)

    models.unix_time = unix_time
    models.unix_time_millis = unix_time_millis


# Queue properties that scan every message; GetQueueAttributes needs them.
_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)
# Backend methods that build Queue.attributes but read no count from it.
_COUNT_FREE = ("send_message", "is_message_valid_based_on_retention_period")


def _patch_counts(models):
    counts_unread = threading.local()

    def counted(original):
        def count(self):
            return 0 if getattr(counts_unread, "depth", 0) else original(self)

        return property(count)

    def count_free(original):
        def call(self, *args, **kwargs):
            counts_unread.depth = getattr(counts_unread, "depth", 0) + 1
            try:
                return original(self, *args, **kwargs)
            finally:
                counts_unread.depth -= 1

        return call

    for name in _COUNTS:
        setattr(models.Queue, name, counted(getattr(models.Queue, name).fget))
    for name in _COUNT_FREE:
        setattr(models.SQSBackend, name, count_free(getattr(models.SQSBackend, name)))


def _patch_delete(models):
    def delete_message(self, receipt_handle):
        if receipt_handle in self.deleted_messages:
            return  # deleting twice is allowed, as in moto
        for index, message in enumerate(self._messages):
            if message.had_receipt_handle(receipt_handle):
                # Mutating in place is safe: receive iterates a filtered copy
                # (Queue.messages), never self._messages itself.
                del self._messages[index]
                self.pending_messages.discard(message)
                self.deleted_messages.update(message.all_receipt_handles)
                return
        raise models.ReceiptHandleIsInvalid()

    models.Queue.delete_message = delete_message


def _check(models):
    """Fail at start if moto no longer has what the fixes rely on."""
    import inspect

    needed = {
        "Queue.delete_message": callable(getattr(models.Queue, "delete_message", None)),
        "ReceiptHandleIsInvalid": hasattr(models, "ReceiptHandleIsInvalid"),
        "unix_time": callable(getattr(models, "unix_time", None)),
        "unix_time_millis": callable(getattr(models, "unix_time_millis", None)),
    }
    for name in _COUNTS:
        needed["Queue." + name] = isinstance(getattr(models.Queue, name, None), property)
    for name in _COUNT_FREE:
        needed["SQSBackend." + name] = callable(getattr(models.SQSBackend, name, None))
    source = inspect.getsource(models.Queue.delete_message)
    needed["delete_message scans _messages"] = "self._messages" in source and "deleted_messages" in source
    missing = [name for name, ok in needed.items() if not ok]
    if missing:
        sys.exit(
            "scripts/moto-server.py: this moto lacks "
            + ", ".join(missing)
            + "; update the fixes or run with MOTO_STOCK=1"
        )


def main():
    from moto import server

    if os.environ.get("MOTO_STOCK") == "1":
        print("moto-server: stock moto (MOTO_STOCK=1)", file=sys.stderr, flush=True)
    else:
        from moto.sqs import models

        _check(models)
        _patch_clock(models)
        _patch_counts(models)
        _patch_delete(models)
        print("moto-server: moto with the SQS speed fixes of scripts/moto-server.py", file=sys.stderr, flush=True)
    server.main(sys.argv[1:])


if __name__ == "__main__":
    main()
