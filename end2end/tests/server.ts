// Starts the real release binary (target/release/hubbub) for a spec: its own port and its own
// database, so specs do not see each other's messages. It can be stopped, killed (-9) and
// started again on the same port and database, to test recovery.
import { ChildProcess, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";

const root = path.resolve(__dirname, "..", "..");

export class Hubbub {
  private child?: ChildProcess;
  port = 0;
  readonly database: string;

  private constructor(private env: Record<string, string>) {
    this.database = path.join(mkdtempSync(path.join(tmpdir(), "hubbub-e2e-")), "chat.db");
  }

  /** A fresh server with an empty database. */
  static async start(env: Record<string, string> = {}): Promise<Hubbub> {
    const server = new Hubbub(env);
    await server.launch();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port and database. */
  async launch(): Promise<void> {
    const child = spawn(path.join(root, "target", "release", "hubbub"), [], {
      cwd: root,
      env: {
        ...process.env,
        LEPTOS_SITE_ADDR: `127.0.0.1:${this.port}`,
        HUBBUB_DATABASE: this.database,
        // Quick heartbeats so the browser notices a dead server within seconds.
        HUBBUB_PING_INTERVAL_MS: "1000",
        HUBBUB_RATE_BURST: "200",
        // Every test person signs up from 127.0.0.1.
        HUBBUB_SIGNUPS_PER_IP_PER_HOUR: "10000",
        RUST_LOG: "warn",
        ...this.env,
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    this.child = child;
    const lines = readline.createInterface({ input: child.stdout! });
    const first = await new Promise<string>((resolve, reject) => {
      lines.once("line", resolve);
      child.once("exit", (code) => reject(new Error(`hubbub exited with ${code}`)));
    });
    const match = first.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
    if (!match) throw new Error(`unexpected output: ${first}`);
    this.port = Number(match[1]);
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once("exit", resolve));
    child.kill(signal);
    await exited;
  }

  /** SIGTERM: graceful shutdown. */
  stop(): Promise<void> {
    return this.end("SIGTERM");
  }

  /** SIGKILL: no shutdown code runs. */
  kill9(): Promise<void> {
    return this.end("SIGKILL");
  }
}
