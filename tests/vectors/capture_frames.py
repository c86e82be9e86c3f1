#!/usr/bin/python3
"""Capture real AMQP 1.0 frames exchanged by Qpid Proton peers (and RabbitMQ).

Run with Debian's interpreter (python3-qpid-proton is installed for it), from anywhere:

    /usr/bin/python3 tests/vectors/capture_frames.py            # writes proton_frames.txt
    /usr/bin/python3 tests/vectors/capture_frames.py --no-rabbitmq   # Proton peers only

How: Proton's example broker (/usr/share/proton/examples/python/broker.py, its Broker
class run in a subprocess) listens on a free port; a small TCP proxy in this script
sits between it and Proton Python clients run here (the same MessagingHandler code as
simple_send.py / simple_recv.py, with fixed container id and link names), and records
every byte in both directions. Unless --no-rabbitmq is given and if RabbitMQ is
installed, the same is done against a private RabbitMQ 3.10 node started with
scripts/rabbitmq (so the peer-side frames there come from RabbitMQ's Erlang encoder,
which chooses encodings differently from Proton; its SASL offers PLAIN).

Output format (same contract as proton_vectors.txt), one vector per line:

    <name> <lowercase hex>

`#` starts a comment line; no blank lines; pure ASCII. Each vector is preceded by
`# <name>: [<scenario>] <direction>, <what it is>` where <what it is> is Proton's
rendering of the performative (and, for transfers, the payload size and the decoded
message when the payload is a whole message).

Names:
    header_amqp_<n>, header_sasl_<n>   8-byte protocol headers ("AMQP" 0|3 1 0 0)
    frame_<performative>_<n>           a whole frame, including its 8-byte frame header
                                       and, for transfer, the payload; performative is
                                       one of open begin attach flow transfer disposition
                                       detach end close sasl_mechanisms sasl_init
                                       sasl_challenge sasl_response sasl_outcome
    frame_empty_<n>                    an empty (heartbeat) frame
<n> counts from 0 per kind. Byte-identical frames are recorded once (first sighting),
so later scenarios only show frames not seen before. Container ids and link names
are fixed, but the exact set of flow frames depends on timing, so a rerun may number
some frames differently: regenerate deliberately, and never rely on a name from one
run meaning the same bytes in another unless the file is committed.
"""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

from proton import Data, Message, symbol
from proton.handlers import MessagingHandler
from proton.reactor import Container

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(HERE, "proton_frames.txt")
EXAMPLES = os.environ.get("PROTON_EXAMPLES", "/usr/share/proton/examples")
RABBITMQ_SCRIPT = os.path.join(ROOT, "scripts", "rabbitmq")

PERFORMATIVES = {
    0x10: "open", 0x11: "begin", 0x12: "attach", 0x13: "flow", 0x14: "transfer",
    0x15: "disposition", 0x16: "detach", 0x17: "end", 0x18: "close",
    0x40: "sasl_mechanisms", 0x41: "sasl_init", 0x42: "sasl_challenge",
    0x43: "sasl_response", 0x44: "sasl_outcome",
}


def free_port(count=1):
    """A port p such that p .. p+count-1 are free (best effort)."""
    for _ in range(200):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
        s.close()
        if p + count >= 65535:
            continue
        ok = True
        for q in range(p, p + count):
            t = socket.socket()
            try:
                t.bind(("127.0.0.1", q))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            return p
    raise RuntimeError("no free port")


def wait_port(port, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d not listening" % port)


# ---------------------------------------------------------------------------- proxy
class Recorder:
    """Records chunks (seq, conn, direction, bytes) from every proxied connection."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seq = 0
        self.chunks = []  # (seq, scenario, conn_id, direction, bytes)
        self.scenario = None
        self.conn_ids = 0

    def new_conn(self):
        with self.lock:
            self.conn_ids += 1
            return self.conn_ids, self.scenario

    def add(self, scenario, conn, direction, data):
        with self.lock:
            self.seq += 1
            self.chunks.append((self.seq, scenario, conn, direction, data))


class Proxy(threading.Thread):
    def __init__(self, recorder, target_port):
        super().__init__(daemon=True)
        self.recorder = recorder
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def run(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            conn, scenario = self.recorder.new_conn()
            for src, dst, direction in ((client, server, "client -> peer"),
                                        (server, client, "peer -> client")):
                threading.Thread(target=self.pump, daemon=True,
                                 args=(src, dst, scenario, conn, direction)).start()

    def pump(self, src, dst, scenario, conn, direction):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.recorder.add(scenario, conn, direction, data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass


# ---------------------------------------------------------------------------- clients
class Sender(MessagingHandler):
    def __init__(self, url, address, messages, **connect_opts):
        super().__init__()
        self.url, self.address, self.messages = url, address, messages
        self.connect_opts = connect_opts
        self.sent = self.accepted = 0

    def on_start(self, event):
        conn = event.container.connect(self.url, **self.connect_opts)
        event.container.create_sender(conn, self.address, name="sender-1")

    def on_sendable(self, event):
        while event.sender.credit and self.sent < len(self.messages):
            event.sender.send(self.messages[self.sent])
            self.sent += 1

    def on_accepted(self, event):
        self.accepted += 1
        if self.accepted == len(self.messages):
            event.sender.close()  # detach(closed=true), then end, then close

    def on_rejected(self, event):
        self.on_accepted(event)

    def on_link_closed(self, event):
        event.link.session.close()

    def on_link_remote_detach(self, event):
        # RabbitMQ 3.10 answers detach(closed=true) with a detach WITHOUT closed=true,
        # which Proton reports as a remote detach, not a close.
        if event.link.state & event.link.LOCAL_CLOSED:
            event.link.session.close()
        else:
            event.link.close()
            event.link.session.close()

    def on_link_error(self, event):
        event.link.close()
        event.link.session.close()

    def on_session_closed(self, event):
        event.connection.close()


class Receiver(MessagingHandler):
    def __init__(self, url, address, count, **connect_opts):
        super().__init__()
        self.url, self.address, self.count = url, address, count
        self.connect_opts = connect_opts
        self.received = 0

    def on_start(self, event):
        conn = event.container.connect(self.url, **self.connect_opts)
        event.container.create_receiver(conn, self.address, name="receiver-1")

    def on_message(self, event):
        self.received += 1
        if self.received == self.count:
            event.receiver.close()

    def on_link_closed(self, event):
        event.link.session.close()

    def on_link_remote_detach(self, event):
        # RabbitMQ 3.10 answers detach(closed=true) with a detach WITHOUT closed=true,
        # which Proton reports as a remote detach, not a close.
        if event.link.state & event.link.LOCAL_CLOSED:
            event.link.session.close()
        else:
            event.link.close()
            event.link.session.close()

    def on_link_error(self, event):
        # the peer detached with an error: answer, then end the session
        event.link.close()
        event.link.session.close()

    def on_session_closed(self, event):
        event.connection.close()


class Idle(MessagingHandler):
    """Open a connection with an idle timeout, stay idle, close: heartbeat frames."""

    def __init__(self, url, seconds, **connect_opts):
        super().__init__()
        self.url, self.seconds, self.connect_opts = url, seconds, connect_opts

    def on_start(self, event):
        self.conn = event.container.connect(self.url, **self.connect_opts)
        event.container.schedule(self.seconds, self)

    def on_timer_task(self, event):
        self.conn.close()


class Once(MessagingHandler):
    """Just connect and close once opened (used for SASL failures too)."""

    def __init__(self, url, **connect_opts):
        super().__init__()
        self.url, self.connect_opts = url, connect_opts

    def on_start(self, event):
        event.container.connect(self.url, **self.connect_opts)

    def on_connection_opened(self, event):
        event.connection.close()

    def on_transport_error(self, event):
        pass


def run_client(recorder, scenario, handler, timeout=20.0):
    recorder.scenario = scenario
    c = Container(handler)
    c.container_id = "aqueduct-capture-client"
    t = threading.Thread(target=c.run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        c.stop()
        raise RuntimeError("scenario %s did not finish in %.0f s" % (scenario, timeout))
    time.sleep(0.2)  # let the proxy forward the last bytes (close, EOS)


# ---------------------------------------------------------------------------- parsing
def split_stream(data):
    """Yield (offset, kind, bytes) for protocol headers and frames in one direction."""
    i = 0
    while i < len(data):
        if data[i:i + 4] == b"AMQP":
            if len(data) - i < 8:
                return
            yield i, "header", data[i:i + 8]
            i += 8
            continue
        if len(data) - i < 8:
            return
        size = struct.unpack(">I", data[i:i + 4])[0]
        if size < 8 or len(data) - i < size:
            return
        yield i, "frame", data[i:i + size]
        i += size


def describe(kind, raw, continuation=False):
    """(name prefix, human description, more flag) of one header or frame.

    continuation: this transfer continues a delivery whose previous frame had more=true."""
    if kind == "header":
        proto = raw[4]
        name = {0: "header_amqp", 3: "header_sasl", 2: "header_tls"}.get(proto, "header_other")
        return name, "protocol header %r" % raw, False
    size, doff, ftype, channel = struct.unpack(">IBBH", raw[:8])
    body = raw[doff * 4:]
    fdesc = "%s frame, channel %d" % ({0: "AMQP", 1: "SASL"}.get(ftype, "type %d" % ftype), channel)
    if not body:
        return "frame_empty", fdesc + ", empty (heartbeat)", False
    d = Data()
    n = d.decode(body)
    d.rewind()
    d.next()
    code = None
    if d.type() == Data.DESCRIBED:
        d.enter()
        d.next()
        if d.type() == Data.ULONG:
            code = d.get_ulong()
        d.exit()
    perf = PERFORMATIVES.get(code, "unknown")
    text = "%s: %s" % (fdesc, d.format())
    payload = body[n:]
    more = False
    if perf == "transfer":
        d.rewind()
        d.next()
        fields = d.get_object().value
        more = len(fields) > 5 and fields[5] is True
        text += " + payload %d bytes" % len(payload)
        if more or continuation:
            text += " (%s frame of a multi-frame delivery)" % (
                "a middle" if more and continuation else "the last" if continuation else "the first")
        else:
            m = Message()
            m.decode(payload)
            text += ": " + repr(m)
    return "frame_" + perf, text, more


def ascii_comment(s, limit=600):
    s = s.encode("ascii", "backslashreplace").decode("ascii")
    s = "".join(c if " " <= c <= "~" else "\\x%02x" % ord(c) for c in s)
    if len(s) > limit:
        s = s[:limit - 3] + "..."
    return s


def build_output(recorder, scenarios):
    # Reassemble each (scenario, conn, direction) stream, remembering at which chunk
    # each byte arrived so that items can be ordered in time across directions.
    streams = {}
    for seq, scenario, conn, direction, data in recorder.chunks:
        st = streams.setdefault((scenario, conn, direction), [bytearray(), []])
        st[1].append((len(st[0]), seq))
        st[0].extend(data)
    items = []
    for (scenario, conn, direction), (data, marks) in streams.items():
        data = bytes(data)
        for off, kind, raw in split_stream(data):
            seq = max(s for o, s in marks if o <= off)
            items.append((seq, off, scenario, conn, direction, kind, raw))
    items.sort(key=lambda it: (it[0], it[4], it[1]))

    lines = [
        "# Real AMQP 1.0 frames captured by tests/vectors/capture_frames.py (run it with",
        "# /usr/bin/python3; do not edit by hand). Format: `<name> <hex>`; each vector is a",
        "# whole protocol header (8 bytes) or a whole frame (8-byte frame header included).",
        "# Byte-identical frames appear once, at their first sighting.",
        "# Scenarios (client = Proton Python, peer = Proton's example broker.py or RabbitMQ):",
    ]
    for name, desc in scenarios:
        lines.append("#   %s: %s" % (name, desc))
    seen = set()
    counters = {}
    current = None
    in_delivery = {}  # (scenario, conn, direction) -> previous transfer had more=true
    for seq, off, scenario, conn, direction, kind, raw in items:
        key = (scenario, conn, direction)
        prefix, text, more = describe(kind, raw, in_delivery.get(key, False))
        if prefix == "frame_transfer":
            in_delivery[key] = more
        if raw in seen:
            continue
        seen.add(raw)
        if scenario != current:
            current = scenario
            lines.append("#")
            lines.append("# ==== scenario %s ====" % scenario)
        n = counters.get(prefix, 0)
        counters[prefix] = n + 1
        name = "%s_%d" % (prefix, n)
        lines.append(ascii_comment("# %s: [%s] %s, %s" % (name, scenario, direction, text)))
        lines.append("%s %s" % (name, raw.hex()))
    return "\n".join(lines) + "\n", counters


# ---------------------------------------------------------------------------- main
def main():
    use_rabbitmq = "--no-rabbitmq" not in sys.argv[1:] and os.path.exists(
        "/usr/lib/rabbitmq/bin/rabbitmq-server")
    recorder = Recorder()
    scenarios = []
    procs = []
    rmq_port = None
    try:
        # Proton's example broker, unmodified, with a fixed container id.
        bport = free_port()
        code = ("import sys; sys.path.insert(0, %r); import broker; "
                "from proton.reactor import Container; "
                "c = Container(broker.Broker('127.0.0.1:%d')); "
                "c.container_id = 'proton-example-broker'; c.run()"
                % (os.path.join(EXAMPLES, "python"), bport))
        procs.append(subprocess.Popen([sys.executable, "-c", code]))
        wait_port(bport)
        proxy = Proxy(recorder, bport)
        proxy.start()
        url = "amqp://127.0.0.1:%d" % proxy.port

        def seq_msgs(n, first=1):
            return [Message(id=i, body={"sequence": i}) for i in range(first, first + n)]

        scenarios.append(("send", "SASL ANONYMOUS; attach sender-1 to \"examples\"; send 3 "
                          "messages Message(id=n, body={\"sequence\": n}) (like simple_send.py); "
                          "detach, end, close"))
        run_client(recorder, "send", Sender(url, "examples", seq_msgs(3)))
        scenarios.append(("recv", "attach receiver-1 from \"examples\" (credit 10); receive the "
                          "3 messages, accept them; detach, end, close"))
        run_client(recorder, "recv", Receiver(url, "examples", 3))
        big = Message(id=100, subject="big", body="0123456789" * 150)
        scenarios.append(("big_send", "send one 1500-char string message (id 100, subject "
                          "\"big\") to \"big\""))
        run_client(recorder, "big_send", Sender(url, "big", [big]))
        scenarios.append(("big_recv", "receive it with max-frame-size 512: the broker splits "
                          "the delivery over several transfer frames (more=true)"))
        run_client(recorder, "big_recv", Receiver(url, "big", 1, max_frame_size=512))
        scenarios.append(("idle", "open with heartbeat=1 (Proton advertises idle-time-out "
                          "500 ms), stay idle 1.2 s: the broker sends empty frames; then close"))
        run_client(recorder, "idle", Idle(url, 1.2, heartbeat=1))
        body_kinds = [
            Message(body=b"\x00\x01\x02", inferred=True, durable=True),
            Message(body=[1, "a"], inferred=True, properties={"k": "v"}),
            Message(body=None, annotations={"x-opt-foo": "bar"}, content_type="text/plain"),
        ]
        scenarios.append(("bodies", "send 3 messages with a data section, an amqp-sequence "
                          "and no body, to \"bodies\""))
        run_client(recorder, "bodies", Sender(url, "bodies", body_kinds))

        if use_rabbitmq:
            rmq_port = free_port(3)
            subprocess.run([RABBITMQ_SCRIPT, "start", str(rmq_port)], check=True,
                           stdout=sys.stderr)
            rproxy = Proxy(recorder, rmq_port)
            rproxy.start()
            rurl = "amqp://127.0.0.1:%d" % rproxy.port
            plain = dict(user="guest", password="guest", allowed_mechs="PLAIN")
            scenarios.append(("rmq_send", "RabbitMQ 3.10: SASL PLAIN guest/guest; send 2 "
                              "messages to /queue/capture"))
            run_client(recorder, "rmq_send", Sender(rurl, "/queue/capture", seq_msgs(2), **plain))
            scenarios.append(("rmq_recv", "RabbitMQ 3.10: receive the 2 messages from "
                              "/queue/capture"))
            run_client(recorder, "rmq_recv", Receiver(rurl, "/queue/capture", 2, **plain))
            scenarios.append(("rmq_bad_source", "RabbitMQ 3.10: attach a receiver to "
                              "/exchange/missing/x: RabbitMQ ends the whole session with "
                              "error amqp:not-found"))
            run_client(recorder, "rmq_bad_source",
                       Receiver(rurl, "/exchange/missing/x", 1, **plain))
            scenarios.append(("rmq_bad_password", "RabbitMQ 3.10: SASL PLAIN guest/wrong: "
                              "sasl-outcome code 1 (auth)"))
            run_client(recorder, "rmq_bad_password",
                       Once(rurl, user="guest", password="wrong", allowed_mechs="PLAIN",
                            reconnect=False))
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        if rmq_port is not None:
            subprocess.run([RABBITMQ_SCRIPT, "stop", str(rmq_port)], stdout=sys.stderr)

    text, counters = build_output(recorder, scenarios)
    with open(OUT, "w") as f:
        f.write(text)
    print("wrote %d vectors to %s: %s" % (sum(counters.values()), OUT,
          ", ".join("%s=%d" % kv for kv in sorted(counters.items()))))


if __name__ == "__main__":
    main()
