"""moto's server, with three speed fixes to its SQS that keep its behaviour,
and one rule of SQS's that moto lacks.

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

The rule: SQS refuses a ChangeMessageVisibilityBatch or DeleteMessageBatch
of more than 10 entries as a whole (HTTP 400,
AWS.SimpleQueueService.TooManyEntriesInBatchRequest); moto 5.2.5 enforces
this for SendMessageBatch only and carries out larger batches, so code that
forgets to chunk would pass every local test. Enforced here as SQS does.

At start it checks that the code the fixes wrap still looks as expected, so a
moto upgrade that moves things fails loudly instead of running half-fixed.
`python scripts/moto-server.py --self-check` (run by scripts/test.sh) plays one
queue's life (sends, a delayed message, receives, deletes twice and with bad
handles, visibility changes, redrive to the DLQ, the counts at each step) on
stock moto and on fixed moto, in process, and fails if any answer differs,
except the batches of 11 entries: those stock moto carries out and the fixed
one must refuse with SQS's error (and change nothing); batches of 10 must
pass on both. tests/ then run against the fixed server.
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


# What SQS answers for a batch of more than 10 entries (AWS JSON protocol:
# the query-compatible code is what the SDKs report).
TOO_MANY_ENTRIES = "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
_BATCH_LIMITED = ("change_message_visibility_batch", "delete_message_batch")


def _patch_batch_limits(models):
    class TooManyEntriesInBatchRequest(models.SQSException if hasattr(models, "SQSException") else Exception):
        code = TOO_MANY_ENTRIES

        def __init__(self, number):
            super().__init__(
                TOO_MANY_ENTRIES,
                f"Maximum number of entries per request are 10. You have sent {number}.",
            )

    def limited(original):
        def call(self, queue_name, entries, *args, **kwargs):
            if len(entries) > 10:
                raise TooManyEntriesInBatchRequest(len(entries))
            return original(self, queue_name, entries, *args, **kwargs)

        return call

    for name in _BATCH_LIMITED:
        setattr(models.SQSBackend, name, limited(getattr(models.SQSBackend, name)))


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
    for name in _COUNT_FREE + _BATCH_LIMITED:
        needed["SQSBackend." + name] = callable(getattr(models.SQSBackend, name, None))
    needed["SQSException"] = hasattr(models, "SQSException")
    source = inspect.getsource(models.Queue.delete_message)
    needed["delete_message scans _messages"] = "self._messages" in source and "deleted_messages" in source
    missing = [name for name, ok in needed.items() if not ok]
    if missing:
        sys.exit(
            "scripts/moto-server.py: this moto lacks "
            + ", ".join(missing)
            + "; update the fixes or run with MOTO_STOCK=1"
        )


def _patch(models):
    _check(models)
    _patch_clock(models)
    _patch_counts(models)
    _patch_delete(models)
    _patch_batch_limits(models)


def _scenario():
    """What a client can observe of one queue's life, minus ids and times."""
    import boto3
    from moto import mock_aws

    seen = []
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="dlq")["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        url = sqs.create_queue(
            QueueName="q",
            Attributes={
                "VisibilityTimeout": "30",
                "RedrivePolicy": '{"deadLetterTargetArn": "%s", "maxReceiveCount": "2"}' % dlq_arn,
            },
        )["QueueUrl"]
        counts = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"]

        def attributes(queue, names=("All",)):
            got = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=list(names))["Attributes"]
            return {k: v for k, v in sorted(got.items()) if "Timestamp" not in k}

        def receive(n=10):
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=n, MessageSystemAttributeNames=["All"]).get("Messages", [])
            seen.append(("received", sorted((m["Body"], m["Attributes"]["ApproximateReceiveCount"]) for m in got)))
            return {m["Body"]: m["ReceiptHandle"] for m in got}

        for i in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        sqs.send_message(QueueUrl=url, MessageBody="late", DelaySeconds=1)
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": f"b{i}", "MessageBody": f"b{i}"} for i in range(3)])
        seen.append(("after sends", attributes(url)))
        handles = receive()
        seen.append(("in flight", attributes(url, counts)))
        sqs.delete_message(QueueUrl=url, ReceiptHandle=handles["m0"])
        sqs.delete_message(QueueUrl=url, ReceiptHandle=handles["m0"])  # twice is fine
        try:
            sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
            seen.append(("bad handle", "accepted"))
        except sqs.exceptions.ClientError as e:
            seen.append(("bad handle", e.response["Error"]["Code"]))
        result = sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": "ok", "ReceiptHandle": handles["b0"]}, {"Id": "bad", "ReceiptHandle": "nope"}],
        )
        seen.append(("batch delete", [e["Id"] for e in result.get("Successful", [])], [e["Code"] for e in result.get("Failed", [])]))
        for body in ("m1", "b1"):
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handles[body], VisibilityTimeout=0)
        receive()  # m1 and b1 again: their second receive
        seen.append(("after second receive", attributes(url, counts)))
        time.sleep(1.2)  # "late" becomes visible
        handles = receive()
        for body in handles:
            sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=handles[body], VisibilityTimeout=0)
        receive()  # past maxReceiveCount: moved to the DLQ instead
        seen.append(("queue", attributes(url, counts)))
        seen.append(("dlq", attributes(dlq, counts)))

        # Batches at and over SQS's limit of 10 entries.
        limit = sqs.create_queue(QueueName="limit", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
        for i in range(11):
            sqs.send_message(QueueUrl=limit, MessageBody=f"l{i}")
        got = []
        for _ in range(3):
            got += sqs.receive_message(QueueUrl=limit, MaxNumberOfMessages=10).get("Messages", [])
        handles = [m["ReceiptHandle"] for m in got]
        seen.append(("limit received", len(handles)))

        def batch(call, entries):
            try:
                result = call(QueueUrl=limit, Entries=entries)
                return ("ok", len(result.get("Successful", [])), len(result.get("Failed", [])))
            except sqs.exceptions.ClientError as e:
                return ("error", e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])

        visibility = [{"Id": f"v{i}", "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(handles)]
        seen.append(("visibility batch of 10", batch(sqs.change_message_visibility_batch, visibility[:10])))
        seen.append(("over the limit: visibility batch of 11", batch(sqs.change_message_visibility_batch, visibility)))
        seen.append(("limit after visibility", attributes(limit, counts)))
        got = []
        for _ in range(3):
            got += sqs.receive_message(QueueUrl=limit, MaxNumberOfMessages=10).get("Messages", [])
        # Whatever came back, topped up to 11 with handles of the first receive.
        again = [m["ReceiptHandle"] for m in got]
        again += handles[len(again):11]
        deletes = [{"Id": f"d{i}", "ReceiptHandle": h} for i, h in enumerate(again)]
        seen.append(("over the limit: delete batch of 11", batch(sqs.delete_message_batch, deletes)))
        seen.append(("delete batch of 10", batch(sqs.delete_message_batch, deletes[:10])))
        seen.append(("limit at the end", attributes(limit, counts)))
    return seen


def self_check():
    """Runs the scenario on stock moto, then with the fixes; they must agree."""
    from moto.sqs import models

    stock = _scenario()
    _patch(models)
    fixed = _scenario()
    # Where the fixed moto must differ: SQS's limit on batch entries.
    # Stock moto carries out 11; SQS refuses them whole with a 400, and the
    # queue's counts after that differ only by what the stock batch did.
    refused = ("error", TOO_MANY_ENTRIES, 400)
    differ = {"over the limit: visibility batch of 11", "over the limit: delete batch of 11",
              "limit after visibility", "limit at the end"}
    same = [(a, b) for a, b in zip(stock, fixed) if a[0] not in differ]
    limit_ok = [b[1] for b in fixed if b[0].startswith("over the limit")] == [refused, refused]
    # Refused whole: the 10 made visible again are received again, the 11th
    # stays in flight; after the refused delete and the delete of 10, one
    # message is left (in flight).
    counts_ok = {b[0]: b[1] for b in fixed}.get("limit at the end") == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesDelayed": "0",
        "ApproximateNumberOfMessagesNotVisible": "1",
    }
    if len(stock) != len(fixed) or any(a != b for a, b in same) or not limit_ok or not counts_ok:
        for a, b in zip(stock, fixed):
            marker = "  " if a == b else "!="
            print(f"{marker} stock {a}\n{marker} fixed {b}", file=sys.stderr)
        sys.exit("moto-server.py --self-check: the fixed moto answers differently from stock moto, "
                 "or does not refuse batches of more than 10 entries as SQS does")
    print(f"moto-server.py --self-check: stock and fixed moto agree on all {len(same)} observations; "
          f"batches of 11 entries are refused with {TOO_MANY_ENTRIES} (HTTP 400)")


def main():
    if sys.argv[1:] == ["--self-check"]:
        self_check()
        return
    from moto import server

    if os.environ.get("MOTO_STOCK") == "1":
        print("moto-server: stock moto (MOTO_STOCK=1)", file=sys.stderr, flush=True)
    else:
        from moto.sqs import models

        _patch(models)
        print("moto-server: moto with the SQS speed fixes of scripts/moto-server.py", file=sys.stderr, flush=True)
    server.main(sys.argv[1:])


if __name__ == "__main__":
    main()
