#!/usr/bin/env python3
"""Scenario tests with python-socketio (Debian python3-socketio) against a
real chatd: both auth styles, a bad token, delivery to members only,
message:send acks, over websocket and over HTTP long-polling.

    CHATD=/path/to/chatd /usr/bin/python3 python_socketio_test.py
"""
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import unittest
import urllib.request

import socketio

CHATD = os.environ.get("CHATD")


class Chatd:
    def __init__(self, *args, data_dir=None):
        # data_dir: share another chatd's database (several processes)
        self.own_dir = data_dir is None
        self.dir = data_dir or tempfile.mkdtemp(prefix="chatd-py-")
        self.proc = subprocess.Popen(
            [CHATD, "--listen", "127.0.0.1:0", "--data-dir", self.dir,
             "--rate-login-ip", "off", "--rate-login-account", "off", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in self.proc.stdout:
            m = re.search(r"url=(http://[0-9.]+:[0-9]+)", line)
            if m:
                self.url = m.group(1)
                break
        else:
            raise RuntimeError("chatd did not start")
        # keep reading the log so chatd never blocks on a full pipe; the
        # warnings stay for tests to look at
        self.warnings = []
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self):
        for line in self.proc.stdout:
            if "level=warn" in line or "level=error" in line:
                self.warnings.append(line)

    def api(self, method, path, body=None, token=None):
        req = urllib.request.Request(
            self.url + path, method=method,
            data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", "Bearer " + token)
        with urllib.request.urlopen(req) as r:
            data = r.read()
            return r.status, json.loads(data) if data else None

    def user(self, name):
        name = "%s%d" % (name, os.getpid())
        password = "correct horse battery"
        self.api("POST", "/api/users/auth/register",
                 {"email": name + "@example.test", "username": name,
                  "password": password})
        _, body = self.api("POST", "/api/users/auth/login",
                           {"login": name, "password": password})
        return {"token": body["access_token"], "id": body["user"]["id"]}

    def dm(self, a, b):
        """The id of the DM between users a and b (created by a)."""
        _, conv = self.api("POST", "/api/chats/conversations/dm",
                           {"user_id": b["id"]}, a["token"])
        return conv["id"]

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=15)
        if self.own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        return code


class Client:
    """A python-socketio client whose events land in a queue."""

    def __init__(self, url, transports, auth=None, namespace="/"):
        self.events = queue.Queue()
        self.sio = socketio.Client(reconnection=False)
        self.namespace = namespace
        for name in ("authenticated", "unauthorized", "message:new",
                     "read:updated", "typing", "conversation:updated",
                     "presence", "error"):
            self.sio.on(name, self._handler(name), namespace=namespace)
        self.sio.on("disconnect", lambda: self.events.put(("disconnect", None)),
                    namespace=namespace)
        path = "ws/socket.io" if namespace == "/ws" else "socket.io"
        self.sio.connect(url, auth=auth, transports=transports,
                         namespaces=[namespace], socketio_path=path,
                         wait_timeout=5)

    def _handler(self, name):
        return lambda data=None: self.events.put((name, data))

    def wait(self, name, pred=lambda d: True, timeout=5):
        kept = []
        try:
            while True:
                ev = self.events.get(timeout=timeout)
                if ev[0] == name and pred(ev[1]):
                    return ev[1]
                kept.append(ev)
        except queue.Empty:
            raise AssertionError("no %r within %ss; got %r" % (name, timeout, kept))
        finally:
            for ev in kept:
                self.events.put(ev)

    def none(self, name, pred=lambda d: True, timeout=0.4):
        try:
            self.wait(name, pred, timeout)
        except AssertionError:
            return
        raise AssertionError("unexpected %r" % name)

    def call(self, event, data):
        return self.sio.call(event, data, namespace=self.namespace, timeout=5)

    def close(self):
        self.sio.disconnect()


class PythonSocketIO(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Chatd()
        cls.alice = cls.srv.user("alice")
        cls.bob = cls.srv.user("bob")
        cls.carol = cls.srv.user("carol")
        cls.dm = cls.srv.dm(cls.alice, cls.bob)

    @classmethod
    def tearDownClass(cls):
        assert cls.srv.stop() == 0

    def scenario(self, transports):
        a = Client(self.srv.url, transports, auth={"token": self.alice["token"]})
        self.assertEqual(a.wait("authenticated")["userId"], self.alice["id"])
        b = Client(self.srv.url, transports, namespace="/ws")
        ack = b.call("authenticate", {"token": self.bob["token"]})
        self.assertEqual(ack["userId"], self.bob["id"])
        c = Client(self.srv.url, transports, auth={"token": self.carol["token"]})
        c.wait("authenticated")

        ack = a.call("message:send", {"conversation_id": self.dm,
                                      "content": "hi from python",
                                      "client_msg_id": "py-" + transports[0]})
        self.assertIn("message_id", ack)
        for cl in (a, b):
            m = cl.wait("message:new", lambda m: m["message_id"] == ack["message_id"])
            self.assertEqual(m["preview"], "hi from python")
            self.assertEqual(m["seq"], ack["seq"])
            self.assertEqual(m["sender_id"], self.alice["id"])
        c.none("message:new")

        r = b.call("read", {"conversation_id": self.dm, "seq": ack["seq"]})
        self.assertEqual(r["seq"], ack["seq"])
        u = a.wait("read:updated", lambda u: u["user_id"] == self.bob["id"])
        self.assertEqual(u["seq"], ack["seq"])

        r = c.call("message:send", {"conversation_id": self.dm, "content": "x"})
        self.assertEqual(r["error"]["code"], "forbidden")
        for cl in (a, b, c):
            cl.close()

    def test_websocket(self):
        self.scenario(["websocket"])
        with urllib.request.urlopen(self.srv.url + "/metrics") as r:
            text = r.read().decode()
        metrics = dict(line.rsplit(" ", 1) for line in text.splitlines()
                       if line and not line.startswith("#"))
        self.assertGreater(int(metrics['chat_realtime_sockets_total{result="authenticated"}']), 0)
        self.assertGreater(int(metrics["chat_realtime_deliveries_total"]), 0)

    def test_polling(self):
        self.scenario(["polling"])

    def test_bad_token(self):
        for transports in (["websocket"], ["polling"]):
            c = Client(self.srv.url, transports, auth={"token": "x.y.z"})
            self.assertEqual(c.wait("unauthorized")["message"], "invalid token")
            c.wait("disconnect")
            c.close()

    def test_expired_token(self):
        srv = Chatd("--access-ttl", "1")
        try:
            u = srv.user("eve")
            import time
            time.sleep(2.1)
            c = Client(srv.url, ["websocket"])
            c.sio.emit("authenticate", {"token": u["token"]})
            self.assertEqual(c.wait("unauthorized")["message"], "token expired")
            c.close()
        finally:
            self.assertEqual(srv.stop(), 0)


if __name__ == "__main__":
    if not CHATD:
        raise SystemExit("set CHATD to the chatd binary")
    unittest.main(verbosity=2)
