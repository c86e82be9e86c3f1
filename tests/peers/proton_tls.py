#!/usr/bin/python3
"""Proton Python peers with TLS and SASL options, for tests/tls_interop.rs.

  proton_tls.py broker HOST PORT --cert C --key K [--ca CA [--require-client-cert]] [--mechs M]
      Listens (PORT 0 = any free port), prints "listening on PORT" (flushed) once ready, and
      runs a tiny broker: messages sent to an address are queued and delivered to receivers
      of that address. Each authenticated connection prints "auth USER MECH". Runs until
      killed.
  proton_tls.py send URL ADDRESS COUNT [--ca CA] [--cert C --key K] [--user U --password P]
                [--mechs M] [--verify-name|--verify-peer]
      Connects (amqps:// URLs use TLS), sends COUNT messages (body "message N") to ADDRESS,
      prints "COUNT messages sent and acknowledged" once all are accepted, closes, exit 0.
      Any error (transport or link) is printed on stderr and exits 1.
"""
import argparse
import collections
import socket
import sys

from proton import Message, SSLDomain
from proton.handlers import MessagingHandler
from proton.reactor import Container


def server_domain(args):
    d = SSLDomain(SSLDomain.MODE_SERVER)
    d.set_credentials(args.cert, args.key, None)
    if args.ca:
        d.set_trusted_ca_db(args.ca)
        mode = SSLDomain.VERIFY_PEER if args.require_client_cert else SSLDomain.ANONYMOUS_PEER
        d.set_peer_authentication(mode, args.ca)
    return d


class Broker(MessagingHandler):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.queues = collections.defaultdict(collections.deque)
        self.consumers = collections.defaultdict(list)

    def on_start(self, event):
        c = event.container
        if self.args.mechs:
            c.allowed_mechs = self.args.mechs
        port = self.args.port
        if port == "0":
            # Proton's Python Acceptor does not tell its port: pick a free one.
            s = socket.socket()
            s.bind((self.args.host, 0))
            port = s.getsockname()[1]
            s.close()
        self.acceptor = c.listen("%s:%s" % (self.args.host, port),
                                 ssl_domain=server_domain(self.args))
        print("listening on %s" % port, flush=True)

    def on_connection_opened(self, event):
        t = event.transport
        sasl = t.sasl()
        print("auth %s %s" % (t.user, sasl.mech if sasl else None), flush=True)

    def on_link_opening(self, event):
        l = event.link
        if l.is_sender:
            addr = l.remote_source.address
            l.source.address = addr
            self.consumers[addr].append(l)
        else:
            l.target.address = l.remote_target.address

    def dispatch(self, addr):
        q = self.queues[addr]
        for s in self.consumers[addr]:
            while q and s.credit > 0:
                s.send(q.popleft())

    def on_sendable(self, event):
        self.dispatch(event.link.source.address)

    def on_message(self, event):
        addr = event.link.target.address
        self.queues[addr].append(event.message)
        self.dispatch(addr)

    def on_link_closing(self, event):
        l = event.link
        if l.is_sender and l in self.consumers[l.source.address]:
            self.consumers[l.source.address].remove(l)


class Send(MessagingHandler):
    def __init__(self, args):
        super().__init__()
        self.args = args
        self.sent = 0
        self.confirmed = 0
        self.failed = False

    def on_start(self, event):
        a = self.args
        domain = None
        if a.url.startswith("amqps"):
            domain = SSLDomain(SSLDomain.MODE_CLIENT)
            if a.ca:
                domain.set_trusted_ca_db(a.ca)
            mode = SSLDomain.VERIFY_PEER if a.verify_peer else SSLDomain.VERIFY_PEER_NAME
            domain.set_peer_authentication(mode, a.ca)
            if a.cert:
                domain.set_credentials(a.cert, a.key, None)
        kw = {}
        if a.user:
            kw["user"] = a.user
            kw["password"] = a.password
        if a.mechs:
            kw["allowed_mechs"] = a.mechs
        conn = event.container.connect(a.url, ssl_domain=domain, allow_insecure_mechs=True,
                                         reconnect=False, **kw)
        event.container.create_sender(conn, a.address)

    def on_sendable(self, event):
        while event.sender.credit and self.sent < self.args.count:
            self.sent += 1
            event.sender.send(Message(id=self.sent, body="message %d" % self.sent))

    def on_accepted(self, event):
        self.confirmed += 1
        if self.confirmed == self.args.count:
            print("%d messages sent and acknowledged" % self.confirmed, flush=True)
            event.connection.close()

    def on_rejected(self, event):
        self.fail("rejected")
        event.connection.close()

    def fail(self, why):
        print("error: %s" % why, file=sys.stderr, flush=True)
        self.failed = True

    def on_transport_error(self, event):
        c = event.transport.condition
        self.fail("transport: %s %s" % (c.name, c.description) if c else "transport error")

    def on_connection_error(self, event):
        c = event.connection.remote_condition
        self.fail("connection: %s %s" % (c.name, c.description) if c else "connection error")

    def on_link_error(self, event):
        c = event.link.remote_condition
        self.fail("link: %s %s" % (c.name, c.description) if c else "link error")
        event.connection.close()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("broker")
    b.add_argument("host")
    b.add_argument("port")
    b.add_argument("--cert", required=True)
    b.add_argument("--key", required=True)
    b.add_argument("--ca")
    b.add_argument("--require-client-cert", action="store_true")
    b.add_argument("--mechs")
    s = sub.add_parser("send")
    s.add_argument("url")
    s.add_argument("address")
    s.add_argument("count", type=int)
    s.add_argument("--ca")
    s.add_argument("--cert")
    s.add_argument("--key")
    s.add_argument("--user")
    s.add_argument("--password")
    s.add_argument("--mechs")
    s.add_argument("--verify-peer", action="store_true")
    args = p.parse_args()
    if args.cmd == "broker":
        Container(Broker(args)).run()
    else:
        h = Send(args)
        Container(h).run()
        if h.failed or h.confirmed != args.count:
            sys.exit(1)


if __name__ == "__main__":
    main()
