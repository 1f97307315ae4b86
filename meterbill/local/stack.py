"""The embedded local stack: moto's server as the AWS stand-in, tables and queues built from
template.yaml, and the drivers moto lacks: a DynamoDB-stream poller that invokes the aggregator
Lambda handler, SQS workers that invoke the close worker's handler (Lambda's event source
mapping), and a timer that invokes the scheduled dispatcher's handler."""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("meterbill.local")
STATE_DIR = Path(".meterbill")
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
            "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortInUse(SystemExit):
    """The API's port is taken (another `meterbill run`?): nothing was started or written."""


def claim_port(port: int, host: str = "127.0.0.1") -> socket.socket:
    """Bind and listen on the API's port before anything else starts, and keep it for uvicorn.

    A second `meterbill run` on a busy port stops here, before it starts moto, creates a key or
    writes `.meterbill/local.json` (which the running stack's `meterbill demo` and `keys create`
    read). Holding the socket from now on also leaves no gap for another process to take it while
    moto starts."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a port in TIME_WAIT is free; a listened one is not
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno != errno.EADDRINUSE:
            raise PortInUse(f"meterbill: cannot listen on {host}:{port}: {exc.strerror}") from exc
        raise PortInUse(
            f"meterbill: port {port} is already in use, probably by a running `meterbill run` (its demo "
            f"and keys keep working). Stop it first, or choose another port: METERBILL_PORT={port + 1} make run\n"
            "Nothing was started; .meterbill/local.json is unchanged.") from exc
    return sock


def cli_command(*args: str) -> str:
    """How to type the `meterbill` command from here: `meterbill` only if that name on PATH is this
    installation's; otherwise the script next to this interpreter (`.venv/bin/meterbill`, relative
    to the current directory when it lies below it)."""
    script = Path(sys.executable).parent / "meterbill"
    if not script.exists():
        return " ".join(["meterbill", *args])
    on_path = shutil.which("meterbill")
    if on_path and Path(on_path).resolve() == script.resolve():
        shown = "meterbill"
    else:
        try:
            shown = str(script.absolute().relative_to(Path.cwd()))
        except ValueError:
            shown = str(script.absolute())
    return " ".join([shown, *args])


@dataclass
class LambdaContext:
    """What Lambda passes a handler, for the local stack's invocations: each invocation its own
    request id, the ARN naming the same function (Powertools logs both with every line)."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = ""   # default: the ARN of ``function_name``
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if not self.invoked_function_arn:
            self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


class BoundedTextFormatter(logging.Formatter):
    """Plain log lines of the local stack (libraries, and module loggers when the Powertools service
    is not named ``meterbill``), bounded like the JSON ones: message and traceback lines cut."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        from meterbill.bootstrap import MAX_FIELD_CHARS

        text = super().formatMessage(record)
        return text if len(text) <= MAX_FIELD_CHARS else f"{text[:MAX_FIELD_CHARS]}… ({len(text) - MAX_FIELD_CHARS} more characters)"

    def formatException(self, ei: Any) -> str:  # noqa: N802
        from meterbill.bootstrap import bounded_traceback

        return bounded_traceback(super().formatException(ei))


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the runner dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: Ctrl-C still reaches it (same process group) and the runner stops it


def start_moto(port: int) -> subprocess.Popen[bytes]:
    # Same process group as the runner, so Ctrl-C (SIGINT to the foreground group) reaches it too.
    cmd = [sys.executable, "-m", "meterbill.local.moto_server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("moto server exited at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError("moto server did not start within 30 s")


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=2)   # moto keeps nothing worth waiting for: in-memory data is lost anyway
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


class StopRequested(Exception):
    """SIGINT or SIGTERM arrived: `meterbill run` unwinds through its cleanup."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise StopRequested(signal.Signals(signum).name)


def stop_on_signals() -> None:
    """SIGINT and SIGTERM both raise StopRequested in the main thread. While uvicorn serves it
    handles them itself (stops accepting, lets in-flight requests answer); when it is done it
    re-raises the signal it got, which lands here."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_stop)


def ignore_signals() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


def exit_within(seconds: float, code: int) -> None:
    """Call after the cleanup: should the interpreter still wait for a worker thread ``seconds``
    from now (an abandoned request's DynamoDB writes, or an aggregation batch, retrying against the
    stopped moto server, whose data is gone anyway), leave without it."""

    def leave() -> None:
        time.sleep(seconds)
        busy = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon]
        log.warning("still waiting for %s after %g s; exiting without them", busy, seconds)
        logging.shutdown()
        os._exit(code)

    threading.Thread(target=leave, name="exit-deadline", daemon=True).start()


def prepare_environment(endpoint: str) -> None:
    for k, v in FAKE_AWS.items():
        os.environ.setdefault(k, v)
    os.environ["METERBILL_DYNAMODB_ENDPOINT"] = endpoint
    os.environ.setdefault("METERBILL_EVENTS_TABLE", "meterbill-events")
    os.environ.setdefault("METERBILL_BILLING_TABLE", "meterbill-billing")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "meterbill")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "meterbill")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")  # no EMF spam on a terminal
    os.environ.setdefault("METERBILL_STREAM_SETTLE_S", "0")        # moto's stream is synchronous
    os.environ.setdefault("METERBILL_CLOSE_WAIT_RETRY_S", "2")     # the local aggregator is never far behind
    if not os.environ.get("METERBILL_PORTAL_SECRET_PARAMETER"):
        os.environ.setdefault("METERBILL_PORTAL_SECRET", local_portal_secret())


def local_portal_secret() -> str:
    """The local stack's portal link key: made once, kept in .meterbill/portal-secret (0600), so the
    CLI's `meterbill portal-link` and the running stack sign and check with the same key."""
    path = STATE_DIR / "portal-secret"
    if not path.exists():
        STATE_DIR.mkdir(exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass   # another process made it just now
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


def sqs_client(endpoint: str | None) -> Any:
    import boto3
    from botocore.config import Config

    # long polls (WaitTimeSeconds) of several worker threads share it
    return boto3.client("sqs", endpoint_url=endpoint, region_name=os.environ["AWS_REGION"],
                        config=Config(max_pool_connections=32, read_timeout=30))


def create_queues(endpoint: str) -> dict[str, str]:
    """The template's queues on moto; their URLs into the environment the handlers read. Locally
    the close queue's visibility timeout is METERBILL_CLOSE_VISIBILITY_S (default 30 s, not the
    template's 6 x the Lambda timeout): messages of a killed local worker come back within it."""
    from infra.template import QUEUE_ENV, create_queues as create, load_template

    template = load_template()
    visibility = os.environ.get("METERBILL_CLOSE_VISIBILITY_S", "30")
    template["Resources"]["CloseQueue"]["Properties"]["VisibilityTimeout"] = int(visibility)
    client = sqs_client(endpoint)
    urls = create(client, {logical: f"meterbill-{logical}" for logical in QUEUE_ENV}, template)
    for logical, env in QUEUE_ENV.items():
        os.environ[env] = urls[logical]
    return urls


def create_tables(endpoint: str) -> None:
    import boto3

    from infra.template import TABLE_ENV, create_tables as create

    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=os.environ["AWS_REGION"])
    create(client, {logical: os.environ[env] for logical, env in TABLE_ENV.items()})


class StreamPoller:
    """Reads the events table's stream like Lambda's event source mapping does: in order per
    shard, a batch at a time, retrying a failed batch from its first record."""

    def __init__(self, endpoint: str | None, table: str, handler: Any, batch_size: int = 1000) -> None:
        import boto3

        region = os.environ["AWS_REGION"]
        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name=region)
        self._streams = boto3.client("dynamodbstreams", endpoint_url=endpoint, region_name=region)
        self._arn = ddb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self._handler = handler
        self._batch = batch_size
        self._checkpoints: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def drain(self) -> int:
        """Process everything currently in the stream; returns records applied."""
        with self._lock:
            total = 0
            shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
            for shard in shards:
                total += self._drain_shard(shard["ShardId"])
            return total

    def _iterator(self, shard: str) -> str:
        after = self._checkpoints.get(shard)
        kwargs: dict[str, Any] = {"StreamArn": self._arn, "ShardId": shard}
        if after:
            kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", SequenceNumber=after)
        else:
            kwargs.update(ShardIteratorType="TRIM_HORIZON")
        return self._streams.get_shard_iterator(**kwargs)["ShardIterator"]

    def _drain_shard(self, shard: str) -> int:
        applied = 0
        while True:
            records = self._streams.get_records(ShardIterator=self._iterator(shard), Limit=self._batch)["Records"]
            if not records:
                return applied
            result = self._handler({"Records": records}, LambdaContext("aggregator"))
            if result.get("batchItemFailures"):
                log.warning("stream batch failed; retrying from its first record")
                time.sleep(0.5)
                continue
            self._checkpoints[shard] = records[-1]["dynamodb"]["SequenceNumber"]
            applied += len(records)


def close_queue_worker(endpoint: str | None, url: str) -> QueueWorker:
    """The close queue consumed by the deployed close worker's handler (functions/close_worker.py)."""
    from functions import close_worker

    return QueueWorker(sqs_client(endpoint), url, close_worker.handler)


def outbox_poller(endpoint: str | None, billing_table: str) -> StreamPoller:
    """The billing table's stream, driven like Lambda's mapping, into the deployed fan-out handler
    (functions/outbox_fanout.py; it skips what the template's FilterCriteria would not pass)."""
    from functions import outbox_fanout

    return StreamPoller(endpoint, billing_table, outbox_fanout.handler)


def sync_workers(endpoint: str | None, container: Any) -> list[QueueWorker]:
    """One worker per enabled integration's sync queue, invoking the dispatch function's code for
    that integration (on AWS one function per queue, METERBILL_INTEGRATION naming it)."""
    from functions import dispatch, webhook_dispatch

    def handler(name: str) -> Any:
        if name == "webhooks":   # outbound webhooks: the webhooks dispatch function (its own handler)
            return lambda event, ctx: webhook_dispatch.process(event, ctx, container.hook_delivery)
        return lambda event, ctx: dispatch.process(event, ctx, container.sync, name)

    client = sqs_client(endpoint)
    return [QueueWorker(client, url, handler(name), function_name=f"{name}_dispatch")
            for name, url in container.settings.sync_queue_urls if url]


class QueueWorker:
    """Consumes an SQS queue like Lambda's event source mapping with ReportBatchItemFailures:
    receives a batch (long poll), invokes the handler with the SQS event Lambda would pass, and
    deletes the messages it did not report failed; those come back after their visibility
    timeout (or the delay the handler set). A worker stopped mid-batch deletes nothing of it."""

    def __init__(self, client: Any, url: str, handler: Any, batch_size: int = 10,
                 function_name: str = "close_worker") -> None:
        self._c = client
        self._url = url
        self._handler = handler
        self._batch = batch_size
        self._name = function_name
        self._arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def poll_once(self, wait_s: int = 0) -> int:
        """One batch (waiting up to ``wait_s`` for one); returns how many messages it held."""
        messages = self._c.receive_message(QueueUrl=self._url, MaxNumberOfMessages=self._batch,
                                           WaitTimeSeconds=wait_s, MessageSystemAttributeNames=["All"]
                                           ).get("Messages", [])
        if not messages:
            return 0
        records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                    "attributes": m.get("Attributes", {}), "messageAttributes": {}, "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs", "eventSourceARN": self._arn, "awsRegion": os.environ["AWS_REGION"]}
                   for m in messages]
        try:
            result = self._handler({"Records": records}, LambdaContext(self._name)) or {}
        except Exception:   # an invocation error: Lambda deletes nothing of the batch
            log.exception("%s: batch failed; its messages come back after their visibility timeout", self._name)
            return len(messages)
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        done = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages) if m["MessageId"] not in failed]
        if done:
            self._c.delete_message_batch(QueueUrl=self._url, Entries=done)
        return len(messages)

    def drain(self, max_batches: int = 100_000) -> int:
        """Process batches until none is visible; returns the messages handled."""
        total = 0
        for _ in range(max_batches):
            n = self.poll_once()
            if not n:
                break
            total += n
        return total


def write_state(state: dict[str, Any]) -> Path:
    STATE_DIR.mkdir(exist_ok=True)
    path = STATE_DIR / "local.json"
    path.write_text(json.dumps(state, indent=2))
    path.chmod(0o600)
    return path


def read_state() -> dict[str, Any]:
    path = STATE_DIR / "local.json"
    return json.loads(path.read_text()) if path.exists() else {}


def clear_state(written: dict[str, Any]) -> None:
    """On stop: remove `.meterbill/local.json` if it is still the one this run wrote (its data is
    gone with the stopped moto server)."""
    try:
        if read_state() == written:
            (STATE_DIR / "local.json").unlink()
    except (OSError, ValueError):
        pass


def dunning_tick() -> None:
    """One dunning tick, as the scheduled function runs it (functions/dunning.py): overdue,
    ladder reminders, collections. Its notices reach the integrations through the outbox."""
    from functions import dunning

    summary = dunning.handler({}, LambdaContext("dunning"))
    if summary["overdue"] or summary["reminders"]:
        log.info("dunning: %d overdue, %d reminders, %d to collections", len(summary["overdue"]),
                 len(summary["reminders"]), len(summary["collections"]))
