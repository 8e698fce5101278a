#!/usr/bin/env python3
"""End to end through the distributed stack (scripts/stack): nginx edge,
user-service, chat-service, two message-services (messages on DynamoDB,
dynalite), two realtime-gateways, PostgreSQL and Redis, all real.

User A's socket goes straight to gateway 1 and B's to gateway 2, so every
live event crosses processes; REST goes through the edge. Then faults:
a gateway killed with SIGKILL (its clients reconnect through the edge and
catch up from history), PostgreSQL stopped (503s, then service again),
fanout-workers killed under load, and Redis restarted empty (the
gateways' heartbeats refill the presence registry, routing resumes).

    BUILD_DIR=build /usr/bin/python3 stack_test.py
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "realtime"))
from python_socketio_test import Client  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
STACK = os.path.join(ROOT, "scripts", "stack")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Stack(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="chat-stack-")
        cls.envp = dict(os.environ, STACK_DIR=cls.dir, CHAT_RATE_LOGIN_IP="off",
                        CHAT_RATE_SEND="off", CHAT_RATE_TOKEN="off",
                        CHAT_PRESENCE_TTL_MS="3000",
                        EDGE_PORT=str(free_port()))
        up = subprocess.run([STACK, "up"], env=cls.envp, capture_output=True,
                            text=True, timeout=300)
        if up.returncode != 0:
            cls.dump_logs()
            cls.tearDownClass()
            raise RuntimeError("stack up failed:\n" + up.stderr)
        cls.edge = up.stdout.strip().splitlines()[-1]
        cls.env = {}
        with open(os.path.join(cls.dir, "env")) as f:
            for line in f:
                k, _, v = line.strip().partition("=")
                cls.env[k] = v
        cls.n = 0
        try:
            cls.warm_up()
        except Exception:
            cls.dump_logs()
            cls.tearDownClass()  # unittest skips it when setUpClass fails
            raise

    @classmethod
    def warm_up(cls):
        """Wait until an event goes all the way: right after `up` the
        fanout-workers' consumer group may still be settling (seconds)."""
        t = cls("test_1_dm_and_group_across_gateways")
        a, b = t.user("wa"), t.user("wb")
        st, dm = t.api("POST", "/api/chats/conversations/dm",
                       {"user_id": b["id"]}, a["token"])
        c = Client(cls.env["REALTIME_GATEWAY_1_URL"], ["websocket"],
                   auth={"token": b["token"]})
        try:
            c.wait("authenticated")
            for _ in range(60):
                t.send(dm["id"], a, "warm-up")
                try:
                    c.wait("message:new", timeout=1)
                    return
                except AssertionError:
                    pass
            raise RuntimeError("no event reached a gateway within 60 s")
        finally:
            c.sio.disconnect()

    @classmethod
    def tearDownClass(cls):
        subprocess.run([STACK, "down"], env=cls.envp, capture_output=True,
                       timeout=120)
        if os.environ.get("STACK_KEEP"):  # the logs, for a post-mortem
            sys.stderr.write("stack kept in %s\n" % cls.dir)
        else:
            shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def dump_logs(cls):
        logs = os.path.join(cls.dir, "logs")
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            with open(os.path.join(logs, name), errors="replace") as f:
                tail = f.readlines()[-15:]
            sys.stderr.write("---- %s\n%s" % (name, "".join(tail)))

    def api(self, method, path, body=None, token=None, base=None):
        req = urllib.request.Request(
            (base or self.edge) + path, method=method,
            data=None if body is None else json.dumps(body).encode())
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                data = r.read()
                return r.status, json.loads(data) if data else None
        except urllib.error.HTTPError as e:
            data = e.read()
            return e.code, json.loads(data) if data else None

    def user(self, name):
        Stack.n += 1
        name = "%s%d%d" % (name, os.getpid(), Stack.n)
        st, _ = self.api("POST", "/api/users/auth/register",
                         {"email": name + "@example.test", "username": name,
                          "password": "correct horse battery"})
        self.assertEqual(st, 201)
        st, body = self.api("POST", "/api/users/auth/login",
                            {"login": name, "password": "correct horse battery"})
        self.assertEqual(st, 200)
        return {"token": body["access_token"], "id": body["user"]["id"]}

    def connect(self, url, user, transports=("websocket",)):
        c = Client(url, list(transports), auth={"token": user["token"]})
        c.wait("authenticated")
        self.addCleanup(c.sio.disconnect)
        return c

    def send(self, conv, user, text):
        st, m = self.api("POST", "/api/messages/conversations/%s/messages"
                         % conv, {"content": text}, user["token"])
        self.assertEqual(st, 201, m)
        return m

    def test_1_dm_and_group_across_gateways(self):
        gw1, gw2 = self.env["REALTIME_GATEWAY_1_URL"], self.env["REALTIME_GATEWAY_2_URL"]
        a, b, c = self.user("ea"), self.user("eb"), self.user("ec")
        ca, cb = self.connect(gw1, a), self.connect(gw2, b)
        # c through the edge: nginx proxies the websocket upgrade
        cc = self.connect(self.edge, c)
        st, dm = self.api("POST", "/api/chats/conversations/dm",
                          {"user_id": b["id"]}, a["token"])
        self.assertIn(st, (200, 201))
        m = self.send(dm["id"], a, "hello across")
        for cl in (ca, cb):
            got = cl.wait("message:new", lambda d: d["message_id"] == m["message_id"])
            self.assertEqual(got["seq"], 1)
        ack = cb.sio.call("message:send", {"conversation_id": dm["id"],
                                           "content": "back from gw2"}, timeout=5)
        self.assertEqual(ack["seq"], 2)
        ca.wait("message:new", lambda d: d["seq"] == 2 and d["conversation_id"] == dm["id"])
        # typing and read state cross gateways
        cb.sio.emit("typing", {"conversation_id": dm["id"], "is_typing": True})
        ca.wait("typing", lambda d: d["user_id"] == b["id"])
        cb.sio.call("read", {"conversation_id": dm["id"], "seq": 2}, timeout=5)
        ca.wait("read:updated", lambda d: d["user_id"] == b["id"] and d["seq"] == 2)
        # a group with members on both gateways and on the edge
        st, g = self.api("POST", "/api/chats/conversations/group",
                         {"title": "e2e", "member_ids": [b["id"], c["id"]]},
                         a["token"])
        self.assertEqual(st, 201)
        gm = self.send(g["id"], a, "to the group")
        for cl in (ca, cb, cc):
            cl.wait("message:new", lambda d: d["message_id"] == gm["message_id"])
        # history through the edge, on either message-service
        st, page = self.api("GET", "/api/messages/conversations/%s/messages"
                            "?after_seq=0&limit=50" % dm["id"], None, b["token"])
        self.assertEqual(st, 200)
        self.assertEqual([x["seq"] for x in page["messages"]], [1, 2])
        st, lst = self.api("GET", "/api/chats/conversations", None, b["token"])
        self.assertEqual(st, 200)
        byid = {x["id"]: x for x in lst["conversations"]}
        self.assertEqual(byid[dm["id"]]["last_seq"], 2)
        self.assertEqual(byid[g["id"]]["unread_count"], 1)

    def test_2_polling_through_the_edge(self):
        a, b = self.user("pa"), self.user("pb")
        cb = self.connect(self.edge, b, transports=("polling",))
        st, dm = self.api("POST", "/api/chats/conversations/dm",
                          {"user_id": b["id"]}, a["token"])
        m = self.send(dm["id"], a, "over long-polling")
        cb.wait("message:new", lambda d: d["message_id"] == m["message_id"])

    def test_3_gateway_killed(self):
        gw2 = self.env["REALTIME_GATEWAY_2_URL"]
        a, b = self.user("ka"), self.user("kb")
        cb = self.connect(gw2, b)
        st, dm = self.api("POST", "/api/chats/conversations/dm",
                          {"user_id": b["id"]}, a["token"])
        self.send(dm["id"], a, "before the crash")
        cb.wait("message:new", lambda d: d["seq"] == 1)
        with open(os.path.join(self.dir, "pids", "realtime-gateway-2")) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        cb.wait("disconnect")
        self.send(dm["id"], a, "while b was away")
        # b comes back through the edge (nginx skips the dead gateway),
        # catches up from history, then hears what comes next live
        cb2 = self.connect(self.edge, b)
        st, page = self.api("GET", "/api/messages/conversations/%s/messages"
                            "?after_seq=1" % dm["id"], None, b["token"])
        self.assertEqual([x["preview"] for x in page["messages"]],
                         ["while b was away"])
        self.send(dm["id"], a, "after")
        cb2.wait("message:new", lambda d: d["seq"] == 3)
        # and the gateway comes back for the tests after this one
        subprocess.run([STACK, "start", "realtime-gateway-2"], env=self.envp,
                       check=True, timeout=60)

    def test_4_postgres_outage(self):
        a = self.user("oa")
        env = self.envp
        subprocess.run([STACK, "pg-stop"], env=env, check=True, timeout=60)
        try:
            st, body = self.api("GET", "/api/users/me", None, a["token"])
            self.assertEqual(st, 503, body)
            st, _ = self.api("GET", "/readyz",
                             base=self.env["USER_SERVICE_URL"])
            self.assertEqual(st, 503)
        finally:
            subprocess.run([STACK, "pg-start"], env=env, check=True, timeout=60)
        for _ in range(50):  # the pool reconnects on next use
            st, body = self.api("GET", "/api/users/me", None, a["token"])
            if st == 200:
                break
            time.sleep(0.1)
        self.assertEqual(st, 200, body)
        self.assertEqual(body["id"], a["id"])


    def test_5_fanout_worker_killed(self):
        """kill -9 each fanout-worker in turn while 10,000 messages flow
        into four groups: the other worker takes the partitions over from
        the last committed offsets, so every member hears every message
        (at least once; clients drop repeats by seq), and the killed ones
        start again."""
        if not self.env.get("KAFKA_BROKERS"):
            self.skipTest("the stack runs without Kafka")
        gw1, gw2 = self.env["REALTIME_GATEWAY_1_URL"], self.env["REALTIME_GATEWAY_2_URL"]
        a, b, c = self.user("fa"), self.user("fb"), self.user("fc")
        cb, cc = self.connect(gw1, b), self.connect(gw2, c)
        groups = []
        for i in range(4):  # four conversations: their partitions spread
            st, g = self.api("POST", "/api/chats/conversations/group",
                             {"title": "fanout %d" % i,
                              "member_ids": [b["id"], c["id"]]}, a["token"])
            self.assertEqual(st, 201)
            groups.append(g["id"])
        total = int(os.environ.get("STACK_FAULT_MESSAGES", "10000"))
        per = total // len(groups)
        sent = [0] * len(groups)
        errors = []
        host, port = self.edge.split("//")[1].split(":")

        def sender(k):
            # one keep-alive connection per group, through the edge
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            try:
                for i in range(1, per + 1):
                    conn.request("POST", "/api/messages/conversations/%s/messages"
                                 % groups[k], json.dumps({"content": "m%d" % i}),
                                 {"Content-Type": "application/json",
                                  "Authorization": "Bearer " + a["token"]})
                    r = conn.getresponse()
                    r.read()
                    if r.status != 201:
                        errors.append(r.status)
                        return
                    sent[k] = i
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
            finally:
                conn.close()

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        # kill one worker at a third of the load, start it again, kill the
        # other at two thirds
        for w, at in (("fanout-worker-1", total // 3),
                      ("fanout-worker-2", 2 * total // 3)):
            while sum(sent) < at and not errors and any(t.is_alive() for t in threads):
                time.sleep(0.01)
            with open(os.path.join(self.dir, "pids", w)) as f:
                os.kill(int(f.read()), signal.SIGKILL)
            if w.endswith("1"):
                subprocess.run([STACK, "start", w], env=self.envp,
                               check=True, timeout=60)
        for t in threads:
            t.join(timeout=300)
        self.assertEqual(errors, [])
        self.assertEqual(sum(sent), per * len(groups))
        for cl in (cb, cc):
            seen = {g: set() for g in groups}
            deadline = time.time() + 120
            while (sum(len(v) for v in seen.values()) < per * len(groups)
                   and time.time() < deadline):
                try:
                    d = cl.wait("message:new",
                                lambda d: d["conversation_id"] in seen,
                                timeout=max(0.1, deadline - time.time()))
                except AssertionError:
                    break
                seen[d["conversation_id"]].add(d["seq"])
            for g in groups:
                self.assertEqual(sorted(seen[g]), list(range(1, per + 1)))
        subprocess.run([STACK, "start", "fanout-worker-2"], env=self.envp,
                       check=True, timeout=60)
        m = self.send(groups[0], a, "after the restarts")
        cb.wait("message:new", lambda d: d["message_id"] == m["message_id"],
                timeout=30)

    def redis_cli(self, *args):
        port = self.env["REDIS_URL"].rsplit(":", 1)[1]
        out = subprocess.run(["redis-cli", "-p", port] + list(args),
                             capture_output=True, text=True, timeout=10)
        return out.stdout.split()

    def test_6_redis_restart(self):
        """Each gateway listens on its own channel, and the presence
        registry knows which gateway each user is on. Redis restarted
        empty: the heartbeats (every CHAT_PRESENCE_TTL_MS / 3 = 1 s) put
        the users back, the subscriptions come back, and messages are
        routed to the right gateway again."""
        gw1, gw2 = self.env["REALTIME_GATEWAY_1_URL"], self.env["REALTIME_GATEWAY_2_URL"]
        a, b = self.user("ra"), self.user("rb")
        ca, cb = self.connect(gw1, a), self.connect(gw2, b)
        st, dm = self.api("POST", "/api/chats/conversations/dm",
                          {"user_id": b["id"]}, a["token"])
        self.assertIn(st, (200, 201))
        self.assertEqual(len(self.redis_cli("PUBSUB", "CHANNELS",
                                            "chat:events:gw:*")), 2)
        for _ in range(30):  # the first socket's entry is written async
            if len(self.redis_cli("ZRANGE", "chat:presence:" + b["id"], "0", "-1")) == 1:
                break
            time.sleep(0.1)
        gws = self.redis_cli("ZRANGE", "chat:presence:" + b["id"], "0", "-1")
        self.assertEqual(len(gws), 1)
        m = self.send(dm["id"], a, "before the restart")
        # test_5 ends by starting a fanout-worker again: the consumer group
        # may still be rebalancing (the mock keeps a killed member for a
        # session timeout), which holds deliveries back for seconds
        cb.wait("message:new", lambda d: d["message_id"] == m["message_id"],
                timeout=30)

        # a key of the test's own shows that Redis came back empty (the
        # registry's keys may be back before the test can look)
        self.redis_cli("SET", "stack:test:sentinel", "1")
        subprocess.run([STACK, "redis-restart"], env=self.envp, check=True,
                       timeout=60)
        self.assertEqual(self.redis_cli("EXISTS", "stack:test:sentinel"), ["0"])
        deadline = time.time() + 30

        def entries(u):
            return self.redis_cli("ZRANGE", "chat:presence:" + u["id"], "0", "-1")
        while time.time() < deadline:
            if entries(b) == gws and len(entries(a)) == 1:
                break
            time.sleep(0.2)
        self.assertEqual(entries(b), gws)
        self.assertEqual(len(entries(a)), 1)
        self.assertNotEqual(entries(a), gws)  # a is on the other gateway
        # live delivery resumes once the subscriptions are back (backoff
        # up to 2 s); what was sent meanwhile is in the history
        got = None
        while got is None and time.time() < deadline:
            # a service still reconnecting may answer 503 (never a crash)
            st, m = self.api("POST", "/api/messages/conversations/%s/messages"
                             % dm["id"], {"content": "after the restart"},
                             a["token"])
            if st == 503:
                time.sleep(0.2)
                continue
            self.assertEqual(st, 201, m)
            try:
                got = cb.wait("message:new",
                              lambda d: d["message_id"] == m["message_id"],
                              timeout=1)
            except AssertionError:
                pass
        self.assertIsNotNone(got, "no delivery within 30 s of the restart")
        ack = cb.sio.call("message:send", {"conversation_id": dm["id"],
                                           "content": "and back"}, timeout=5)
        ca.wait("message:new", lambda d: d["seq"] == ack["seq"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
