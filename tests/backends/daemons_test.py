#!/usr/bin/env python3
"""The five reference daemons as an operator meets them: --help and
--version, a clear exit 2 on bad configuration before any backend is
opened, and, on a private PostgreSQL and Redis: /healthz, /readyz,
/metrics, one JSON object per log line, and SIGTERM answered with a clean
exit 0.

/readyz answers 503 naming the backend while Redis is stopped.

    with-postgres.sh with-redis.sh with-kafka.sh KAFKA_MOCK \
        python3 daemons_test.py BUILD_DIR
"""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest
import urllib.error
import urllib.request

BUILD = sys.argv.pop(1) if len(sys.argv) > 1 else "build"
DAEMONS = ["user-service", "chat-service", "message-service",
           "realtime-gateway", "fanout-worker"]
SECRET = "s" * 40


def path(d):
    return os.path.join(BUILD, "daemons", d)


def run(d, *args, env=None):
    return subprocess.run([path(d), *args], env=env, capture_output=True,
                          text=True, timeout=30)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Cli(unittest.TestCase):
    def test_help_and_version(self):
        for d in DAEMONS:
            r = run(d, "--help", env={})
            self.assertEqual(r.returncode, 0, d)
            self.assertIn("Usage: %s" % d, r.stdout)
            for name in ("DATABASE_URL", "SIGTERM", "/readyz"):
                self.assertIn(name, r.stdout, d)
            r = run(d, "--version", env={})
            self.assertEqual(r.returncode, 0, d)
            self.assertRegex(r.stdout, r"^%s \(libchat\) \d+\.\d+\.\d+\n$" % d)

    def test_bad_configuration_exits_2_before_any_backend(self):
        # the backends named here do not exist: a daemon that tried them
        # first would fail differently (exit 1) or hang
        base = {"JWT_SECRET": SECRET, "REDIS_URL": "redis://127.0.0.1:1",
                "DATABASE_URL": "postgresql://chat@127.0.0.1:1/none",
                "KAFKA_BROKERS": "127.0.0.1:1"}
        cases = [
            ({"JWT_SECRET": None}, "JWT_SECRET"),
            ({"JWT_SECRET": "short"}, "JWT_SECRET"),
            ({"DATABASE_URL": None}, "DATABASE_URL"),
            ({"PORT": "http"}, "listen address"),
            ({"CHAT_RATE_SEND": "fast"}, "sends per user"),
            ({"CHAT_RATE_LOGIN_IP": "10/week"}, "login per IP"),
            ({"CHAT_MAX_CONN_IP": "0"}, "CHAT_MAX_CONN_IP"),
            ({"CHAT_MAX_CONN_USER": "many"}, "CHAT_MAX_CONN_USER"),
            ({"REDIS_URL": "http://127.0.0.1:6379"}, "Redis URL"),
        ]
        for d in DAEMONS:
            if d == "fanout-worker":
                continue  # needs no secret; checked below
            for change, says in cases:
                env = dict(base)
                for k, v in change.items():
                    if v is None:
                        env.pop(k)
                    else:
                        env[k] = v
                r = run(d, env=env)
                self.assertEqual(r.returncode, 2, (d, change, r.stderr))
                self.assertIn(says, r.stderr, (d, change))
                self.assertEqual(len(r.stderr.strip().splitlines()), 1,
                                 (d, change, r.stderr))
            r = run(d, "--no-such-flag", env=base)
            self.assertEqual(r.returncode, 2)
            self.assertIn("unknown argument", r.stderr)
        r = run("fanout-worker", env=dict(base, KAFKA_FETCH_WAIT_MS="0"))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("KAFKA_FETCH_WAIT_MS", r.stderr)
        env = dict(base, CHAT_ROUTE_CACHE_MS="soon")
        r = run("fanout-worker", env=env)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("CHAT_ROUTE_CACHE_MS", r.stderr)
        r = run("fanout-worker", env=dict(base, KAFKA_BROKERS=""))
        self.assertEqual(r.returncode, 2)
        self.assertIn("KAFKA_BROKERS", r.stderr)


class Running(unittest.TestCase):
    """user-service, chat-service and realtime-gateway on real backends
    (message-service is the same program with the log; the stack test
    runs all of them)."""

    def start(self, d):
        port = free_port()
        env = {"JWT_SECRET": SECRET, "PORT": str(port),
               "DATABASE_URL": os.environ["DATABASE_URL"],
               "REDIS_URL": os.environ["REDIS_URL"],
               "KAFKA_BROKERS": os.environ.get("KAFKA_BROKERS", ""),
               "CHAT_LOG_FORMAT": "json", "PATH": os.environ["PATH"]}
        p = subprocess.Popen([path(d)], env=env, stderr=subprocess.PIPE,
                             text=True)
        url = "http://127.0.0.1:%d" % port
        for _ in range(200):
            try:
                if get(url + "/healthz")[0] == 200:
                    return p, url
            except OSError:
                pass
            if p.poll() is not None:
                self.fail("%s exited: %s" % (d, p.stderr.read()))
            time.sleep(0.05)
        p.kill()
        p.wait()
        self.fail("%s did not answer /healthz: %s" % (d, p.stderr.read()))

    def test_serve_then_stop_on_sigterm(self):
        for d in ("user-service", "chat-service", "realtime-gateway"):
            p, url = self.start(d)
            st, body = get(url + "/readyz")
            self.assertEqual(st, 200, (d, body))
            st, body = get(url + "/metrics")
            self.assertEqual(st, 200)
            self.assertIn("# TYPE", body)
            if d == "user-service":
                req = urllib.request.Request(
                    url + "/api/users/auth/register", method="POST",
                    data=json.dumps({"email": "op@example.test",
                                     "username": "op%d" % os.getpid(),
                                     "password": "correct horse battery"})
                    .encode(), headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=10) as r:
                    self.assertEqual(r.status, 201)
            t0 = time.time()
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(timeout=20), 0, d)
            self.assertLess(time.time() - t0, 15)
            lines = p.stderr.read().strip().splitlines()
            p.stderr.close()
            events = []
            for line in lines:
                rec = json.loads(line)  # every line one JSON object
                self.assertEqual(rec["service"], d)
                self.assertIn(rec["level"], ("debug", "info", "warn", "error"))
                m = re.search(r"event=(\w+)", rec["msg"])
                events.append(m.group(1) if m else None)
            self.assertIn("listening", events, d)
            self.assertEqual(events[-1], "stopped", (d, lines[-3:]))


    def redis(self, what):
        subprocess.run("%s %s" % (os.environ["REDIS_CTL_CMD"], what),
                       shell=True, check=True, timeout=30)

    def test_readiness_follows_redis(self):
        """The gateway's bus and registry, and the fanout-worker's Kafka,
        Redis and registry, are part of /readyz."""
        if not os.environ.get("KAFKA_BROKERS"):
            self.skipTest("run under with-kafka.sh")
        procs = [self.start(d) for d in ("realtime-gateway", "fanout-worker")]
        try:
            for p, url in procs:
                self.assertEqual(get(url + "/readyz")[0], 200)
            self.redis("stop")
            try:
                for (p, url), want in zip(procs, ("bus", "redis")):
                    st, body = get(url + "/readyz")
                    self.assertEqual(st, 503, body)
                    self.assertEqual(json.loads(body)["backend"], want)
                    self.assertEqual(get(url + "/healthz")[0], 200)  # alive
            finally:
                self.redis("start")
            for p, url in procs:
                for _ in range(100):  # reconnects on the next check
                    if get(url + "/readyz")[0] == 200:
                        break
                    time.sleep(0.1)
                self.assertEqual(get(url + "/readyz")[0], 200)
        finally:
            for p, url in procs:
                p.send_signal(signal.SIGTERM)
                self.assertEqual(p.wait(timeout=30), 0)
                p.stderr.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
