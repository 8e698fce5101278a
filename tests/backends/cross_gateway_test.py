#!/usr/bin/env python3
"""Live events across processes over the Redis bus: two chatd on one
database, each with --bus redis, user A's socket on the first and user
B's on the second (python-socketio). Everything one does reaches the
other, exactly once per socket. And the rate limits hold for the pair,
not per process: they count in Redis too.

    CHATD=... REDIS_URL=... /usr/bin/python3 cross_gateway_test.py
"""
import json
import os
import sys
import time
import unittest
import urllib.error

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "realtime"))
from python_socketio_test import Chatd, Client  # noqa: E402


class CrossGateway(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.g1 = Chatd("--bus", "redis", "--rate-send", "off")
        cls.g2 = Chatd("--bus", "redis", "--rate-send", "off",
                       data_dir=cls.g1.dir)

    @classmethod
    def tearDownClass(cls):
        assert cls.g2.stop() == 0
        assert cls.g1.stop() == 0

    def connect(self, gw, user):
        c = Client(gw.url, ["websocket"], auth={"token": user["token"]})
        c.wait("authenticated")
        self.addCleanup(c.sio.disconnect)
        return c

    def count(self, client, name, pred, timeout=0.6):
        n = 0
        while True:
            try:
                client.wait(name, pred, timeout)
                n += 1
            except AssertionError:
                return n

    def test_dm_both_ways_exactly_once(self):
        a, b = self.g1.user("xa"), self.g2.user("xb")
        ca, cb = self.connect(self.g1, a), self.connect(self.g2, b)
        conv = self.g1.dm(a, b)
        # REST on the first process, live on both
        _, m = self.g1.api("POST", "/api/messages/conversations/%s/messages"
                           % conv, {"content": "over redis"}, a["token"])
        for c in (ca, cb):
            got = c.wait("message:new", lambda d: d["message_id"] == m["message_id"])
            self.assertEqual(got["preview"], "over redis")
            self.assertEqual(got["seq"], 1)
        # message:send on the second process
        ack = cb.sio.call("message:send", {"conversation_id": conv,
                                           "content": "and back"}, timeout=5)
        self.assertEqual(ack["seq"], 2)
        for c in (ca, cb):  # the sender's own sockets hear it too
            got = c.wait("message:new", lambda d: d["seq"] == 2)
            self.assertEqual(got["sender_id"], b["id"])
        # once each, not once per process
        for c in (ca, cb):
            self.assertEqual(self.count(c, "message:new",
                                        lambda d: d["conversation_id"] == conv), 0)
        # typing and read markers cross too
        cb.sio.emit("typing", {"conversation_id": conv, "is_typing": True})
        t = ca.wait("typing", lambda d: d["user_id"] == b["id"])
        self.assertTrue(t["is_typing"])
        cb.sio.call("read", {"conversation_id": conv, "seq": 2}, timeout=5)
        r = ca.wait("read:updated", lambda d: d["user_id"] == b["id"])
        self.assertEqual(r["seq"], 2)

    def test_membership_changes_reach_the_other_process(self):
        a, b, c = (self.g1.user("ma"), self.g2.user("mb"), self.g2.user("mc"))
        ca, cc = self.connect(self.g1, a), self.connect(self.g2, c)
        _, conv = self.g1.api("POST", "/api/chats/conversations/group",
                              {"title": "across", "member_ids": [b["id"]]},
                              a["token"])
        send = "/api/messages/conversations/%s/messages" % conv["id"]
        self.g1.api("POST", send, {"content": "before"}, a["token"])
        ca.wait("message:new", lambda d: d["preview"] == "before")
        self.assertEqual(self.count(cc, "message:new", lambda d: True), 0)
        # invited on the first process: the second starts delivering to c
        self.g1.api("POST", "/api/chats/conversations/%s/invite" % conv["id"],
                    {"user_id": c["id"]}, a["token"])
        cc.wait("conversation:updated", lambda d: d["action"] == "member_added")
        self.g1.api("POST", send, {"content": "after"}, a["token"])
        cc.wait("message:new", lambda d: d["preview"] == "after")
        # removed: nothing more
        self.g1.api("DELETE", "/api/chats/conversations/%s/members/%s"
                    % (conv["id"], c["id"]), None, a["token"])
        cc.wait("conversation:updated", lambda d: d["action"] == "member_removed")
        self.g1.api("POST", send, {"content": "gone"}, a["token"])
        ca.wait("message:new", lambda d: d["preview"] == "gone")
        self.assertEqual(self.count(cc, "message:new",
                                    lambda d: d["preview"] == "gone"), 0)


class SharedRateLimits(unittest.TestCase):
    """Two chatd on one database and one Redis with --rate-send 10/m: a
    user who alternates between them is held to 10 sends, not 10 each."""

    @classmethod
    def setUpClass(cls):
        cls.g1 = Chatd("--bus", "redis", "--rate-send", "10/m")
        cls.g2 = Chatd("--bus", "redis", "--rate-send", "10/m",
                       data_dir=cls.g1.dir)

    @classmethod
    def tearDownClass(cls):
        assert cls.g2.stop() == 0
        assert cls.g1.stop() == 0

    def send(self, gw, conv, user, i):
        try:
            st, _ = gw.api("POST", "/api/messages/conversations/%s/messages"
                           % conv, {"content": "m%d" % i}, user["token"])
            return st, None
        except urllib.error.HTTPError as e:
            return e.code, e

    def test_sends_count_once_across_processes(self):
        a, b = self.g1.user("ra"), self.g1.user("rb")
        conv = self.g1.dm(a, b)
        accepted, refused = 0, None
        for i in range(20):
            st, err = self.send(self.g1 if i % 2 else self.g2, conv, a, i)
            if st == 201:
                accepted += 1
            else:
                self.assertEqual(st, 429)
                refused = err
            time.sleep(0.15)  # a sharing round (50 ms) between sends
        # per process, 10 each would pass: 20. Shared: 10, plus at most
        # one on the other process, which learns that the pair is over
        # the limit with the answer to its own next send
        self.assertIn(accepted, (10, 11))
        self.assertIsNotNone(refused)
        self.assertGreaterEqual(int(refused.headers["Retry-After"]), 1)
        body = json.loads(refused.read())
        self.assertEqual(body["error"]["code"], "rate_limited")
        # another user is not held back by a's sends
        st, _ = self.send(self.g1, conv, b, 0)
        self.assertEqual(st, 201)


if __name__ == "__main__":
    if not os.environ.get("CHATD") or not os.environ.get("REDIS_URL"):
        sys.exit("CHATD and REDIS_URL must be set")
    unittest.main(verbosity=2)
