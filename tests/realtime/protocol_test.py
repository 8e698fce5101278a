#!/usr/bin/env python3
"""Engine.IO v4 / Socket.IO v5 wire behaviour of lib/realtime, checked on
raw HTTP requests and WebSocket frames against sio-conformance-server (the
server the official suites run against): the same ground as those suites,
plus hostile input.

    SERVER=/path/to/sio-conformance-server /usr/bin/python3 protocol_test.py
"""
import base64
import http.client
import json
import os
import socket
import subprocess
import time
import unittest

import websocket

SERVER = os.environ.get("SERVER")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Base(unittest.TestCase):
    engine = False
    prefix = "/socket.io/"

    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        args = [SERVER, "--port", str(cls.port)] + (["--engine"] if cls.engine else [])
        cls.proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", cls.port)).close()
                break
            except OSError:
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        assert cls.proc.wait(timeout=10) == 0

    def http(self, method, query, body=None, ctype="text/plain;charset=UTF-8"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        headers = {"Content-Type": ctype} if body is not None else {}
        if isinstance(body, str):
            body = body.encode()
        c.request(method, self.prefix + "?" + query, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def open_polling(self):
        st, data = self.http("GET", "EIO=4&transport=polling")
        self.assertEqual(st, 200)
        self.assertEqual(data[:1], b"0")
        return json.loads(data[1:])["sid"]

    def ws(self, query="EIO=4&transport=websocket"):
        return websocket.create_connection(
            "ws://127.0.0.1:%d%s?%s" % (self.port, self.prefix, query), timeout=5)

    def assertClosed(self, ws, timeout=3):
        ws.settimeout(timeout)
        try:
            while True:
                op, _ = ws.recv_data(control_frame=False)
                if op == websocket.ABNF.OPCODE_CLOSE:
                    return
        except (websocket.WebSocketConnectionClosedException, ConnectionError):
            return


class EngineIO(Base):
    engine = True
    prefix = "/engine.io/"

    def test_handshake(self):
        st, data = self.http("GET", "EIO=4&transport=polling")
        h = json.loads(data[1:])
        self.assertEqual(set(h), {"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"})
        self.assertEqual((h["upgrades"], h["pingInterval"], h["pingTimeout"], h["maxPayload"]),
                         (["websocket"], 300, 200, 1000000))
        ws = self.ws()
        h = json.loads(ws.recv()[1:])
        self.assertEqual(h["upgrades"], [])
        ws.close()

    def test_handshake_errors(self):
        for q, code in (("transport=polling", 5), ("EIO=3&transport=polling", 5),
                        ("EIO=4", 0), ("EIO=4&transport=abc", 0)):
            st, data = self.http("GET", q)
            self.assertEqual(st, 400, q)
            self.assertEqual(json.loads(data)["code"], code, q)
        st, data = self.http("POST", "EIO=4&transport=polling", body="4x")
        self.assertEqual((st, json.loads(data)["code"]), (400, 2))
        st, data = self.http("GET", "EIO=4&transport=polling&sid=nope")
        self.assertEqual((st, json.loads(data)["code"]), (400, 1))
        for q in ("EIO=3&transport=websocket", "EIO=4&transport=polling&x=1"):
            with self.assertRaises(Exception):
                self.ws(q).recv()

    def test_polling_messages(self):
        sid = self.open_polling()
        q = "EIO=4&transport=polling&sid=" + sid
        st, data = self.http("POST", q, body="4hello\x1e4\u00e9t\u00e9\x1ebAQID")
        self.assertEqual((st, data), (200, b"ok"))
        st, data = self.http("GET", q)
        self.assertEqual(data.decode(), "4hello\x1e4\u00e9t\u00e9\x1ebAQID")
        # a malformed packet ends the session
        st, _ = self.http("POST", q, body="9nope")
        self.assertEqual(st, 400)
        st, _ = self.http("GET", q)
        self.assertEqual(st, 400)

    def test_polling_hostile(self):
        for body in ("", "4\xff".encode("latin-1"), "b!!!", "\x1e\x1e"):
            sid = self.open_polling()
            q = "EIO=4&transport=polling&sid=" + sid
            st, _ = self.http("POST", q, body=body)
            self.assertEqual(st, 400, repr(body))
        sid = self.open_polling()
        st, _ = self.http("POST", "EIO=4&transport=polling&sid=" + sid, body="4" + "x" * 1000001)
        self.assertEqual(st, 413)

    def test_heartbeat_and_timeout(self):
        sid = self.open_polling()
        q = "EIO=4&transport=polling&sid=" + sid
        for _ in range(2):
            self.assertEqual(self.http("GET", q), (200, b"2"))
            self.assertEqual(self.http("POST", q, body="3")[0], 200)
        time.sleep(0.6)  # no pong: pingInterval + pingTimeout
        self.assertEqual(self.http("GET", q)[0], 400)
        ws = self.ws()
        ws.recv()
        self.assertEqual(ws.recv(), "2")
        self.assertClosed(ws)

    def test_websocket_messages(self):
        ws = self.ws()
        ws.recv()
        ws.send("4hello")
        self.assertEqual(ws.recv(), "4hello")
        ws.send_binary(b"\x01\x02\x03")
        self.assertEqual(ws.recv(), b"\x01\x02\x03")
        ws.send("4\u00e9")
        self.assertEqual(ws.recv(), "4\u00e9")
        ws.send("x")  # unknown packet type
        self.assertClosed(ws)

    def test_websocket_oversize(self):
        ws = self.ws()
        ws.recv()
        ws.send("4" + "y" * 1000001)
        self.assertClosed(ws)

    def test_upgrade(self):
        sid = self.open_polling()
        q = "EIO=4&transport=polling&sid=" + sid
        ws = self.ws("EIO=4&transport=websocket&sid=" + sid)
        ws.send("2probe")
        self.assertEqual(ws.recv(), "3probe")
        # a poll during the upgrade ends at once with a noop
        self.assertEqual(self.http("GET", q), (200, b"6"))
        ws.send("5")
        time.sleep(0.05)
        self.assertEqual(self.http("GET", q)[0], 400)
        ws2 = self.ws("EIO=4&transport=websocket&sid=" + sid)
        self.assertClosed(ws2)
        ws.send("4after")
        self.assertEqual(ws.recv(), "4after")
        ws.close()

    def test_client_close(self):
        sid = self.open_polling()
        q = "EIO=4&transport=polling&sid=" + sid
        self.http("POST", q, body="1")
        self.assertEqual(self.http("GET", q), (200, b"6"))
        self.assertEqual(self.http("GET", q)[0], 400)


class SocketIO(Base):
    def connect(self, packet="40"):
        ws = self.ws()
        ws.recv()
        ws.send(packet)
        return ws

    def test_connect(self):
        ws = self.connect('40{"token":"123"}')
        self.assertEqual(set(json.loads(ws.recv()[2:])), {"sid"})
        self.assertEqual(ws.recv(), '42["auth",{"token":"123"}]')
        ws.send("40/custom,")
        r = ws.recv()
        self.assertTrue(r.startswith("40/custom,{"), r)
        self.assertEqual(ws.recv(), '42/custom,["auth",{}]')
        ws.send("40/nope,")
        self.assertEqual(ws.recv(), '44/nope,{"message":"Invalid namespace"}')
        ws.close()

    def test_events_and_acks(self):
        ws = self.connect()
        ws.recv()
        ws.recv()
        ws.send('42["message",1,"2",{"3":[true]},null]')
        self.assertEqual(ws.recv(), '42["message-back",1,"2",{"3":[true]},null]')
        ws.send('42456["message-with-ack","\u00e9"]')
        self.assertEqual(ws.recv(), '43456["\u00e9"]')
        ws.send('452-7["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        ws.send_binary(b"\x01")
        ws.send_binary(b"")
        self.assertEqual(ws.recv(), '462-7[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]')
        self.assertEqual(ws.recv(), b"\x01")
        self.assertEqual(ws.recv(), b"")
        ws.send("41")
        ws.send('42["message","gone"]')  # not connected any more: dropped
        ws.send("40")
        self.assertTrue(ws.recv().startswith("40{"))
        ws.close()

    def test_invalid_packets_close(self):
        for bad in ("4abc", "42{}", '42abc["x"]', '42["connect"]', "49", '451-["a",{"_placeholder":true,"num":3}]',
                    '42["a",', "2" * 50):
            ws = self.connect()
            ws.recv()
            ws.recv()
            ws.send(bad)
            self.assertClosed(ws)

    def test_binary_without_packet_closes(self):
        ws = self.connect()
        ws.recv()
        ws.recv()
        ws.send_binary(b"\x00")
        self.assertClosed(ws)

    def test_connect_timeout(self):
        ws = self.ws()
        ws.recv()
        t = time.time()
        self.assertClosed(ws, timeout=4)
        self.assertLess(time.time() - t, 3)

    def test_polling_binary_base64(self):
        sid = self.open_polling()
        q = "EIO=4&transport=polling&sid=" + sid
        self.http("POST", q, body="40")
        st, data = self.http("GET", q)
        self.assertIn(b'42["auth",{}]', data)
        self.http("POST", q, body='451-["message",{"_placeholder":true,"num":0}]\x1eb' +
                  base64.b64encode(b"\xff\x00").decode())
        st, data = self.http("GET", q)
        self.assertEqual(data.decode(), '451-["message-back",{"_placeholder":true,"num":0}]\x1eb/wA=')


if __name__ == "__main__":
    if not SERVER:
        raise SystemExit("set SERVER to sio-conformance-server")
    unittest.main(verbosity=2)
