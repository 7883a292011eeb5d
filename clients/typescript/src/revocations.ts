/**
 * Keeping a verifier's copy of mandate's revocation feed (`src/verifier/revocations.rs`): catch
 * up by polling `GET /v1/revocations?after=N&limit=1000`, then follow the Server-Sent Events
 * stream `GET /v1/revocations/stream?after=N`, falling back to polling when it drops. Entries are
 * kept until their mandate's expiry plus 30 s (the clock skew a verifier tolerates). A copy that
 * has not synced for 30 s fails closed: `stale()` names why, and the verifier refuses every call
 * with `revocations_stale` until a sync succeeds again.
 */

import type { Clock, RevocationCheck } from "./verifier.js";
import { SYSTEM_CLOCK } from "./verifier.js";

/** How the copy is kept. */
export interface FollowerOptions {
  /** mandate's base URL. */
  baseUrl: string;
  /** Longer than this without a successful sync, verification fails closed (30 s). */
  maxStalenessMs?: number;
  /** How often to poll when the stream is down (5 s). */
  pollIntervalMs?: number;
  /** A registered reporter's credential, sent with the stream. */
  credential?: string;
  clock?: Clock;
}

/** The clock skew a verifier tolerates: entries are kept this long past their expiry. */
const KEPT_PAST_EXPIRY_MS = 30_000;
/** mandate sends a keep-alive every 5 s: a connection silent for 15 s is dead. */
const SILENCE_MS = 15_000;
/** Largest event accepted. */
const MAX_EVENT = 1 << 20;

interface FeedEntry {
  seq: number;
  revocation_id: string;
  expires_at: string;
}

function entries(value: unknown): FeedEntry[] {
  const items = Array.isArray(value) ? value : [value];
  return items.filter((e): e is FeedEntry =>
    typeof e === "object" && e !== null && Number.isSafeInteger((e as FeedEntry).seq)
    && typeof (e as FeedEntry).revocation_id === "string" && /^[0-9a-fA-F]+$/.test((e as FeedEntry).revocation_id)
    && typeof (e as FeedEntry).expires_at === "string" && Number.isFinite(Date.parse((e as FeedEntry).expires_at)));
}

/** A copy of the revocation feed that a `Verifier` consults on every call. */
export class RevocationFollower implements RevocationCheck {
  private readonly revoked = new Map<string, number>();
  private cursor = 0;
  private lastSuccess: number | undefined;
  private readonly maxStalenessMs: number;
  private readonly pollIntervalMs: number;
  private readonly clock: Clock;
  private running: AbortController | undefined;
  private loop: Promise<void> | undefined;

  constructor(private readonly options: FollowerOptions) {
    this.maxStalenessMs = options.maxStalenessMs ?? 30_000;
    this.pollIntervalMs = options.pollIntervalMs ?? 5_000;
    this.clock = options.clock ?? SYSTEM_CLOCK;
  }

  /** Whether `id` (hex) is revoked and still within its mandate's life plus the skew. */
  isRevoked(id: string): boolean {
    const expires = this.revoked.get(id.toLowerCase());
    return expires !== undefined && expires > this.clock.now() - KEPT_PAST_EXPIRY_MS;
  }

  /** Why the copy cannot be relied on, or `undefined` when it synced recently enough. */
  stale(): string | undefined {
    if (this.lastSuccess === undefined) return "the revocation feed has not been read yet";
    const since = this.clock.monotonic() - this.lastSuccess;
    return since > this.maxStalenessMs ? `no successful sync for ${Math.round(since / 1000)} s` : undefined;
  }

  /** The feed position and how many entries are kept. */
  status(): { cursor: number; entries: number; stale: boolean } {
    return { cursor: this.cursor, entries: this.revoked.size, stale: this.stale() !== undefined };
  }

  private url(path: string): string {
    return `${this.options.baseUrl.replace(/\/+$/, "")}${path}`;
  }

  private apply(items: FeedEntry[]): void {
    const horizon = this.clock.now() - KEPT_PAST_EXPIRY_MS;
    for (const entry of items) {
      const expires = Date.parse(entry.expires_at);
      if (expires > horizon) this.revoked.set(entry.revocation_id.toLowerCase(), expires);
      this.cursor = Math.max(this.cursor, entry.seq);
    }
    for (const [id, expires] of this.revoked) if (expires <= horizon) this.revoked.delete(id);
  }

  private succeeded(): void {
    this.lastSuccess = this.clock.monotonic();
  }

  /** Reads every page after the cursor; returns how many entries were read. */
  async syncOnce(signal?: AbortSignal): Promise<number> {
    let read = 0;
    for (;;) {
      const cursor = this.cursor;
      const timeout = AbortSignal.timeout(10_000);
      const response = await fetch(this.url(`/v1/revocations?after=${cursor}&limit=1000`), {
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      if (!response.ok) throw new Error(`the revocation feed answered ${response.status}`);
      const page = (await response.json()) as { items?: unknown; next_after?: unknown };
      const items = Array.isArray(page.items) ? entries(page.items) : [];
      read += items.length;
      this.apply(items);
      const next = typeof page.next_after === "number" ? page.next_after : cursor;
      // Done when the feed is exhausted, or a page moves the cursor nowhere.
      if (items.length === 0 || next <= cursor || this.cursor <= cursor) {
        this.succeeded();
        return read;
      }
    }
  }

  /** Follows the event stream until it ends or fails (always throws when it stops). */
  async follow(signal?: AbortSignal): Promise<never> {
    const controller = new AbortController();
    const abort = () => controller.abort();
    signal?.addEventListener("abort", abort, { once: true });
    const headers: Record<string, string> = { accept: "text/event-stream" };
    if (this.options.credential !== undefined) headers.authorization = `Bearer ${this.options.credential}`;
    try {
      const response = await fetch(this.url(`/v1/revocations/stream?after=${this.cursor}`), { headers, signal: controller.signal });
      if (!response.ok || response.body === null) throw new Error(`the revocation stream answered ${response.status}`);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const silence = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error("no keep-alive for 15 s")), SILENCE_MS);
        });
        const chunk = await Promise.race([reader.read(), silence]).finally(() => clearTimeout(timer));
        if (chunk.done) throw new Error("the stream ended");
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, "\n");
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const parsed = event.split("\n").filter((l) => l.startsWith("data:")).flatMap((l) => {
            try {
              return entries(JSON.parse(l.slice(5).trim()));
            } catch {
              return [];
            }
          });
          this.apply(parsed);
        }
        if (buffer.length > MAX_EVENT) throw new Error("an event larger than 1 MiB");
        this.succeeded();
      }
    } finally {
      signal?.removeEventListener("abort", abort);
      controller.abort();
    }
  }

  /** Starts following in the background: sync, follow the stream, poll again when it drops. */
  start(): void {
    if (this.running !== undefined) return;
    const running = new AbortController();
    this.running = running;
    const sleep = (ms: number) => new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      running.signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
    });
    this.loop = (async () => {
      while (!running.signal.aborted) {
        try {
          await this.syncOnce(running.signal);
          await this.follow(running.signal);
        } catch {
          // Stream interrupted or feed unreachable: poll again after the interval.
        }
        if (!running.signal.aborted) await sleep(this.pollIntervalMs);
      }
    })();
  }

  /** Stops following. */
  async stop(): Promise<void> {
    this.running?.abort();
    await this.loop;
    this.running = undefined;
    this.loop = undefined;
  }
}
