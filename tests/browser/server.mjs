// Starts the real docklab server for the browser tests, and stops it again.
//
//   const server = await startServer();   // needs DOCKLAB_BIN and DOCKLAB_STATE_DIR
//   await page.goto(server.url + "/");
//   await server.stop();
//
// The server listens on a free 127.0.0.1 port; startServer resolves once GET /healthz answers 200
// and rejects (with the server's stderr) if it does not within the timeout or exits first.
import { spawn } from "node:child_process";
import { createWriteStream, mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";

// Generous: the server may first wait (--wait) for another test process's server to stop.
const HEALTH_TIMEOUT_MS = 1_200_000;
// Stopping ends the server's sessions and warm machine (--end-sessions-on-exit): allow for it.
const STOP_GRACE_MS = 60_000;
const LOG_HEAD_CHARS = 4_000;
const LOG_TAIL_CHARS = 8_000;

/** A port nobody listens on right now: bind port 0, read the port, close. */
export function freePort(host = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const { port } = srv.address();
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(
      `${name} is not set. Run the browser tests as:\n` +
        "  DOCKLAB_BIN=target/debug/docklab DOCKLAB_STATE_DIR=/var/lib/docklab ARTIFACTS=/tmp/artifacts \\\n" +
        "    node --test --test-concurrency=1 tests/browser/",
    );
  }
  return value;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts `$DOCKLAB_BIN serve --listen 127.0.0.1:<port> --state-dir $DOCKLAB_STATE_DIR`.
 * Resolves to { url, port, process, output(), stop() }.
 * `name` only labels the log file written to $ARTIFACTS (server-<name>.log) when ARTIFACTS is set.
 */
export async function startServer({ name = "server", timeoutMs = HEALTH_TIMEOUT_MS } = {}) {
  const bin = requiredEnv("DOCKLAB_BIN");
  const stateDir = requiredEnv("DOCKLAB_STATE_DIR");
  // Another process may grab the port between our probe and the server's bind: try a few ports.
  let lastError;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const port = await freePort();
    try {
      return await launch({ bin, stateDir, port, name, timeoutMs });
    } catch (err) {
      lastError = err;
      if (!err.addressInUse) throw err;
    }
  }
  throw lastError;
}

async function launch({ bin, stateDir, port, name, timeoutMs }) {
  const listen = `127.0.0.1:${port}`;
  const url = `http://${listen}`;
  // No warm pool: refilling it adds host network interfaces at any moment, and Chromium (on the
  // same host here, never in real use) aborts requests in flight with ERR_NETWORK_CHANGED.
  const args = ["serve", "--wait", "--listen", listen, "--state-dir", stateDir, "--warm-machines", "0", "--end-sessions-on-exit"];
  const child = spawn(bin, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NO_COLOR: "1" },
  });

  let log = null;
  if (process.env.ARTIFACTS) {
    mkdirSync(process.env.ARTIFACTS, { recursive: true });
    log = createWriteStream(path.join(process.env.ARTIFACTS, `${name}.log`));
    log.write(`$ ${bin} ${args.join(" ")}\n`);
  }

  // Keep the head and the tail of stdout+stderr for failure messages (the head has the start-up
  // lines, which repeated warnings would otherwise push out).
  let head = "";
  let tail = "";
  let dropped = false;
  const collect = (chunk) => {
    const text = chunk.toString("utf8");
    if (log) log.write(text);
    if (head.length < LOG_HEAD_CHARS) {
      const room = LOG_HEAD_CHARS - head.length;
      head += text.slice(0, room);
      if (text.length <= room) return;
      tail += text.slice(room);
    } else {
      tail += text;
    }
    if (tail.length > LOG_TAIL_CHARS) {
      tail = tail.slice(-LOG_TAIL_CHARS);
      dropped = true;
    }
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);

  let exited = null; // {code, signal} once the process is gone
  const exitPromise = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  let spawnError = null;
  child.once("error", (err) => {
    spawnError = err;
  });

  // If the test process dies without running `after`, do not leave the server behind.
  const killOnExit = () => {
    if (!exited) child.kill("SIGKILL");
  };
  process.once("exit", killOnExit);

  async function stop() {
    process.removeListener("exit", killOnExit);
    if (!exited && !spawnError) {
      child.kill("SIGTERM");
      let timer;
      const grace = new Promise((resolve) => {
        timer = setTimeout(() => resolve(null), STOP_GRACE_MS);
      });
      const done = await Promise.race([exitPromise, grace]);
      clearTimeout(timer);
      if (!done) {
        child.kill("SIGKILL");
        await exitPromise;
      }
    }
    if (log) await new Promise((resolve) => log.end(resolve));
    return exited;
  }

  const output = () => head + (dropped ? "\n[…]\n" : "") + tail;
  const describe = () => `--- server output ---\n${output() || "(nothing)"}\n--- end of server output ---`;

  // Wait for /healthz.
  const deadline = Date.now() + timeoutMs;
  let last = "no answer yet";
  for (;;) {
    if (spawnError) {
      await stop();
      throw new Error(`could not start ${bin}: ${spawnError.message}`);
    }
    if (exited) {
      await stop();
      const err = new Error(
        `docklab serve exited before it was healthy (code ${exited.code}, signal ${exited.signal})\n${describe()}`,
      );
      err.addressInUse = /address already in use|AddrInUse|os error 98/i.test(output());
      throw err;
    }
    try {
      const response = await fetch(url + "/healthz", { signal: AbortSignal.timeout(5_000) });
      const body = await response.text();
      if (response.status === 200) break;
      last = `${response.status} ${body.trim().slice(0, 500)}`;
    } catch (err) {
      last = String(err.cause?.code || err.cause?.message || err.message || err);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(
        `GET ${url}/healthz did not answer 200 within ${timeoutMs / 1000} s (last: ${last})\n${describe()}`,
      );
    }
    await sleep(250);
  }

  return { url, port, process: child, output, describe, stop };
}
