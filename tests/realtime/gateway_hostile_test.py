#!/usr/bin/env python3
"""Hostile input to chatd's Socket.IO gateway on raw WebSocket frames:
oversize and malformed packets, bad UTF-8, binary attachments, a client
that stops reading, clients that vanish mid-delivery. Each must end that
connection (or answer an error ack) while chatd keeps serving everyone
else with bounded memory.

    CHATD=/path/to/chatd /usr/bin/python3 gateway_hostile_test.py
"""
import json
import re
import os
import socket
import threading
import time
import unittest
import urllib.request

import websocket

from python_socketio_test import Chatd

CHATD = os.environ.get("CHATD")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class GatewayHostile(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Chatd("--rate-send", "off", "--rate-events", "off")
        cls.alice = cls.srv.user("alice")
        cls.bob = cls.srv.user("bob")
        cls.dm = cls.srv.dm(cls.alice, cls.bob)

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    @staticmethod
    def next_frame(ws, skip=r'42(/ws,)?\["presence"'):
        """The next frame that skip does not match. By default presence
        events are skipped: they come when other tests' sockets come and
        go, at any moment."""
        while True:
            m = ws.recv()
            if not (isinstance(m, str) and re.match(skip, m)):
                return m

    def ws(self, token=None):
        url = self.srv.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
        ws = websocket.create_connection(url, timeout=5)
        self.assertEqual(ws.recv()[0], "0")
        if token:
            ws.send("40" + json.dumps({"token": token}))
            self.assertTrue(self.next_frame(ws).startswith("40{"))
            self.assertIn("authenticated", self.next_frame(ws))
        return ws

    def alive(self):
        with urllib.request.urlopen(self.srv.url + "/healthz") as r:
            self.assertEqual(r.status, 200)
        ws = self.ws(self.alice["token"])
        ws.send('421["typing",{"conversation_id":"%s","is_typing":false}]' % self.dm)
        while True:
            m = ws.recv()
            if m.startswith("431"):
                break
        ws.close()

    def closed(self, ws, timeout=5):
        ws.settimeout(timeout)
        try:
            while True:
                op, _ = ws.recv_data(control_frame=False)
                if op == websocket.ABNF.OPCODE_CLOSE:
                    return True
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return True
        except websocket.WebSocketTimeoutException:
            return False

    def test_oversize_packet_closes(self):
        ws = self.ws(self.alice["token"])
        ws.send('42["message:send",{"content":"' + "x" * 200000 + '"}]')
        self.assertTrue(self.closed(ws))
        self.alive()

    def test_malformed_packets_close(self):
        for bad in ("4", "42", "42[", '42{"a":1}', "4x", "9", "42[1,2]x",
                    '42["message:send"]junk', "40/ws" + "x" * 300):
            ws = self.ws(self.alice["token"])
            ws.send(bad)
            self.assertTrue(self.closed(ws), bad)
        self.alive()

    def test_bad_utf8_closes(self):
        ws = self.ws(self.alice["token"])
        ws.send(b'42["typing",{"x":"\xc3\x28"}]', opcode=websocket.ABNF.OPCODE_TEXT)
        self.assertTrue(self.closed(ws))
        self.alive()

    def test_wrong_types_get_error_acks(self):
        ws = self.ws(self.alice["token"])
        for i, args in enumerate(('{"conversation_id":5,"content":"x"}',
                                  '{"conversation_id":"%s","content":["x"]}' % self.dm,
                                  '{"conversation_id":"%s","content":"x","client_msg_id":"a b"}' % self.dm,
                                  '"str"', "null", "[1]")):
            ws.send('42%d["message:send",%s]' % (i, args))
            while True:
                m = ws.recv()
                if m.startswith("43%d[" % i):
                    self.assertIn('"error"', m)
                    break
        # a binary attachment where none is expected
        ws.send('451-9["message:send",{"_placeholder":true,"num":0}]')
        ws.send_binary(b"\x00\x01")
        while True:
            m = ws.recv()
            if isinstance(m, str) and m.startswith("439["):
                self.assertIn("validation_failed", m)
                break
        ws.close()
        self.alive()

    def open_sockets(self):
        """Authenticated sockets open now, from chatd's /metrics."""
        with urllib.request.urlopen(self.srv.url + "/metrics") as r:
            text = r.read().decode()
        m = dict(line.rsplit(" ", 1) for line in text.splitlines()
                 if line and not line.startswith("#"))
        return (int(m.get('chat_realtime_sockets_total{result="authenticated"}', 0))
                - int(m.get("chat_realtime_sockets_closed_total", 0)))

    def await_open_sockets(self, n, seconds):
        """open_sockets() once it is n, or what it is after seconds."""
        for _ in range(int(seconds * 10)):
            if self.open_sockets() == n:
                break
            time.sleep(0.1)
        return self.open_sockets()

    @staticmethod
    def read_until(ws, stop):
        """A started thread that reads and drops ws's frames until stop is
        set or ws closes."""
        def read():
            try:
                while not stop.is_set():
                    ws.recv()
            except Exception:
                pass
        t = threading.Thread(target=read)
        t.start()
        return t

    def test_peers_vanishing_mid_fanout_are_closed(self):
        # four times, 15 of bob's sockets reset at once (RST, no close
        # frame) while alice's messages are being fanned out to them: a
        # write that finds its peer gone must end that connection and its
        # session like any other close (each run has some such writes)
        base = self.open_sockets()
        a = self.ws(self.alice["token"])
        stop = threading.Event()

        def send():
            i = 0
            while not stop.is_set() and i < 20000:
                a.send('42%d["message:send",{"conversation_id":"%s",'
                       '"content":"z"}]' % (i, self.dm))
                i += 1
                if i % 20 == 0:
                    time.sleep(0.001)
        sender = threading.Thread(target=send)
        sender.start()
        reader = self.read_until(a, stop)
        rst = b"\x01\x00\x00\x00\x00\x00\x00\x00"  # SO_LINGER on, 0 s
        for _ in range(4):
            bobs = [self.ws(self.bob["token"]) for _ in range(15)]
            time.sleep(0.1)
            for ws in bobs:  # all at once, mid-stream
                ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, rst)
            for ws in bobs:
                ws.sock.close()
        stop.set()
        sender.join(30)
        a.close()
        reader.join(30)
        self.assertEqual(self.await_open_sockets(base, 10), base)
        self.alive()

    def test_slow_reader_half_closing_is_closed(self):
        # bob stops reading while ~3 MB of message:new is on its way to
        # him: more than the kernel's send buffer takes (~2.5 MB here), so
        # lws and chatd's queue hold the rest (under its 1 MiB limit: no
        # slow-consumer close). Then he half-closes (FIN; his unread bytes
        # stay): chatd reads EOF on a connection with output still pending
        # and must end it, not loop on it
        base = self.open_sockets()
        b = self.ws(self.bob["token"])
        b.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        a = self.ws(self.alice["token"])
        stop = threading.Event()
        reader = self.read_until(a, stop)
        for i in range(7000):
            a.send('42%d["message:send",{"conversation_id":"%s",'
                   '"content":"%s"}]' % (i, self.dm, "y" * 200))
        time.sleep(0.3)
        b.sock.shutdown(socket.SHUT_WR)
        # lws waits up to 5 s to flush, then drops it; alice's is left
        self.assertEqual(self.await_open_sockets(base + 1, 15), base + 1)
        stop.set()
        a.close()
        reader.join(10)
        b.sock.close()
        self.alive()

    def test_slow_consumer_is_dropped(self):
        # bob's socket never reads while alice sends 20,000 messages
        # (~9 MB of message:new for bob) over her socket
        N = 20000
        slow = self.ws(self.bob["token"])
        # the same connection joins /ws too: when its queue overflows while
        # an event goes to its first socket, the second one goes with it
        slow.send("40/ws," + json.dumps({"token": self.bob["token"]}))
        # bob's "/" socket is authenticated: whatever reaches it (late
        # events of earlier tests) is not the /ws answer being waited for
        on_root = r'42\[|42/ws,\["presence"'
        self.assertTrue(self.next_frame(slow, on_root).startswith("40/ws,{"))
        self.assertIn("authenticated", self.next_frame(slow, on_root))
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        base_rss = rss_kib(self.srv.proc.pid)
        a = self.ws(self.alice["token"])
        acks = [0]

        def drain():
            try:
                while acks[0] < N:
                    m = a.recv()
                    if isinstance(m, str) and m.startswith("43"):
                        acks[0] += 1
            except Exception:
                pass
        t = threading.Thread(target=drain)
        t.start()
        frame = '42%d["message:send",{"conversation_id":"' + self.dm + \
            '","content":"' + "y" * 200 + '"}]'
        for i in range(N):
            a.send(frame % i)
            # alice reads her own traffic: keep her well ahead of her limit
            while i - acks[0] > 500 and t.is_alive():
                time.sleep(0.001)
        t.join(60)
        self.assertEqual(acks[0], N)
        grown = rss_kib(self.srv.proc.pid) - base_rss
        if os.environ.get("CHAT_SANITIZED", "0") in ("0", ""):
            self.assertLess(grown, 128 * 1024, "chatd grew %d KiB" % grown)
        # bob's connection was dropped: chatd says so in its log
        for _ in range(100):
            if any("event=slow_consumer" in w for w in self.srv.warnings):
                break
            time.sleep(0.05)
        self.assertTrue(any("event=slow_consumer" in w for w in self.srv.warnings),
                        "a slow consumer was not disconnected")
        slow.close()
        a.close()
        self.alive()


if __name__ == "__main__":
    if not CHATD:
        raise SystemExit("set CHATD to the chatd binary")
    unittest.main(verbosity=2)
