// Shared helpers for the socket.io-client tests: a real chatd on a free
// port in a temporary directory, REST calls, and event waits with timeouts.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { io } from "socket.io-client";

export async function startChatd(chatd, args = []) {
  const dir = mkdtempSync(join(tmpdir(), "chatd-rt-"));
  const proc = spawn(
    chatd,
    [
      "--listen", "127.0.0.1:0", "--data-dir", dir,
      "--rate-login-ip", "off", "--rate-login-account", "off",
      "--log-level", "info", ...args,
    ],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  let log = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("chatd did not start:\n" + log)), 10000);
    const onData = (d) => {
      log += d;
      const m = /url=(http:\/\/[0-9.]+:[0-9]+)/.exec(log);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    };
    proc.stdout.on("data", onData);
    proc.stderr.on("data", onData);
    proc.on("exit", (code) => reject(new Error(`chatd exited ${code}:\n${log}`)));
  });
  return {
    url,
    proc,
    async stop() {
      const exited = new Promise((r) => proc.once("exit", (code, sig) => r(code ?? sig)));
      proc.kill("SIGTERM");
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}

export async function api(base, method, path, body, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = "Bearer " + token;
  const res = await fetch(base + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

let seq = 0;
export async function register(base, name) {
  const u = `${name}${process.pid}x${++seq}`;
  const password = "correct horse battery";
  let r = await api(base, "POST", "/api/users/auth/register",
    { email: `${u}@example.test`, username: u, password });
  if (r.status !== 201) throw new Error("register: " + JSON.stringify(r));
  r = await api(base, "POST", "/api/users/auth/login", { login: u, password });
  if (r.status !== 200) throw new Error("login: " + JSON.stringify(r));
  return { token: r.body.access_token, id: r.body.user.id, name: u };
}

// A socket.io-client socket. nsp "/" uses path /socket.io/, "/ws" the
// original system's /ws/socket.io/.
export function connect(base, { nsp = "/", transports = ["websocket"], auth, reconnection = false, upgrade = true } = {}) {
  const path = nsp === "/ws" ? "/ws/socket.io/" : "/socket.io/";
  const s = io(base + (nsp === "/" ? "" : nsp), {
    path, transports, auth, reconnection, upgrade, forceNew: true,
    reconnectionDelay: 100, reconnectionDelayMax: 500, timeout: 5000,
  });
  s.received = [];
  s.onAny((event, ...args) => s.received.push([event, ...args]));
  return s;
}

// The next `event` (or one already received and not yet taken) matching
// `pred`, within ms.
export function waitFor(s, event, pred = () => true, ms = 5000) {
  const i = s.received.findIndex(([e, a]) => e === event && pred(a));
  if (i >= 0) return Promise.resolve(s.received.splice(i, 1)[0][1]);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.offAny(h);
      reject(new Error(`no '${event}' within ${ms} ms; got ${JSON.stringify(s.received)}`));
    }, ms);
    const h = (e, a) => {
      if (e !== event || !pred(a)) return;
      clearTimeout(timer);
      s.offAny(h);
      const j = s.received.findIndex(([ee, aa]) => ee === e && aa === a);
      if (j >= 0) s.received.splice(j, 1);
      resolve(a);
    };
    s.onAny(h);
  });
}

// Reserved events (connect, disconnect, connect_error) do not reach onAny.
export function once(s, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${ms} ms`)), ms);
    s.once(event, (a) => { clearTimeout(timer); resolve(a); });
  });
}

// Nothing matching arrives within ms.
export async function expectNone(s, event, pred = () => true, ms = 400) {
  await new Promise((r) => setTimeout(r, ms));
  const hit = s.received.find(([e, a]) => e === event && pred(a));
  if (hit) throw new Error(`unexpected '${event}': ${JSON.stringify(hit)}`);
}

export function emitAck(s, event, arg, ms = 5000) {
  return s.timeout(ms).emitWithAck(event, arg);
}

export async function authed(base, user, opts = {}) {
  const s = connect(base, { ...opts, auth: { token: user.token } });
  const a = await waitFor(s, "authenticated");
  if (a.userId !== user.id) throw new Error("authenticated as " + a.userId);
  return s;
}
