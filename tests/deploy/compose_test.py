#!/usr/bin/env python3
"""deploy/docker-compose.yml without a container engine: it parses, has
the seed's profiles, and references only what exists — build contexts,
Dockerfiles and their targets, mounted files, services named in
depends_on, the daemons the targets run, the upstreams of the nginx edge
and the Prometheus targets."""
import os
import re
import unittest

import yaml

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DEPLOY = os.path.join(ROOT, "deploy")


class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        with open(os.path.join(DEPLOY, "docker-compose.yml")) as f:
            cls.doc = yaml.safe_load(f)
        cls.services = cls.doc["services"]

    def test_profiles(self):
        used = {p for s in self.services.values() for p in s.get("profiles", [])}
        self.assertEqual(used, {"infra", "apps", "edge", "ui", "obs"})
        for name, s in self.services.items():
            self.assertTrue(s.get("profiles"), name)

    def test_builds_exist(self):
        for name, s in self.services.items():
            b = s.get("build")
            if not b:
                self.assertIn("image", s, name)
                continue
            ctx = os.path.normpath(os.path.join(DEPLOY, b["context"]))
            self.assertTrue(os.path.isdir(ctx), name)
            dockerfile = os.path.join(ctx, b["dockerfile"])
            self.assertTrue(os.path.isfile(dockerfile), name)
            with open(dockerfile) as f:
                targets = re.findall(r"^FROM \S+ AS (\S+)", f.read(), re.M)
            self.assertIn(b["target"], targets, name)
            # the target runs a daemon this project builds
            self.assertTrue(os.path.isdir(os.path.join(ROOT, "daemons",
                                                       b["target"])), name)

    def test_mounts_and_dependencies_exist(self):
        for name, s in self.services.items():
            for v in s.get("volumes", []):
                src = v.split(":")[0]
                if src.startswith("."):
                    self.assertTrue(os.path.exists(os.path.join(DEPLOY, src)),
                                    "%s: %s" % (name, src))
                else:
                    self.assertIn(src, self.doc.get("volumes", {}), name)
            deps = s.get("depends_on", [])
            for d in (deps if isinstance(deps, list) else deps.keys()):
                self.assertIn(d, self.services, name)

    def test_daemon_environment(self):
        env = self.doc["x-chat-env"]
        for key in ("DATABASE_URL", "REDIS_URL", "KAFKA_BROKERS",
                    "DYNAMODB_ENDPOINT", "JWT_SECRET"):
            self.assertIn(key, env)

    def test_edge_and_prometheus_name_real_services(self):
        with open(os.path.join(DEPLOY, "nginx", "chat.conf")) as f:
            upstreams = re.findall(r"^\s*server ([a-z0-9-]+):\d+;", f.read(), re.M)
        with open(os.path.join(DEPLOY, "prometheus", "prometheus.yml")) as f:
            prom = yaml.safe_load(f)
        targets = [t.split(":")[0] for c in prom["scrape_configs"]
                   for sc in c["static_configs"] for t in sc["targets"]]
        self.assertTrue(upstreams and targets)
        for host in upstreams + targets:
            self.assertIn(host, self.services, host)


if __name__ == "__main__":
    unittest.main(verbosity=2)
