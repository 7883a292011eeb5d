/**
 * Keeping a verifier's copy of mandate's revocation feed (`src/verifier/revocations.rs`): catch
 * up by polling `GET /v1/revocations?after=N&limit=1000`, then follow the Server-Sent Events
 * stream `GET /v1/revocations/stream?after=N`, falling back to polling when it drops. Entries are
 * kept until their mandate's expiry plus 31 s: the 30 s clock skew a verifier tolerates, plus the
 * second a verifier's whole-second time adds (a token expiring at E is accepted until
 * `floor(now) - 30 > E`, that is while `now < E + 31 s`). A copy that has not synced for 30 s
 * fails closed: `stale()` names why, and the verifier refuses every call with
 * `revocations_stale` until a sync succeeds again.
 *
 * Nothing unreadable is skipped: a page without `items` and `next_after`, an entry that is not
 * one, or an event whose data does not parse fails the sync (the copy is not marked fresh, and
 * nothing of that page is applied); on a bad event the stream is dropped and the feed polled
 * again from the last entry read, so no later entry moves the cursor past a lost one.
 */

import type { Clock, RevocationCheck } from "./verifier.js";
import { SYSTEM_CLOCK, isRfc3339 } from "./verifier.js";

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

/**
 * Entries are kept this long past their expiry: the clock skew a verifier tolerates (30 s) and
 * one second, as a verifier compares whole seconds (`floor(now) - skew > expires` is expired).
 */
const KEPT_PAST_EXPIRY_MS = 30_000 + 1_000;
/** mandate sends a keep-alive every 5 s: a connection silent for 15 s is dead. */
const SILENCE_MS = 15_000;
/** Largest event accepted. */
const MAX_EVENT = 1 << 20;

interface FeedEntry {
  seq: number;
  revocation_id: string;
  expires_at: string;
}

/** The feed sent something this follower cannot read: the sync fails. */
class Unreadable extends Error {
  constructor(what: string) {
    super(`the revocation feed sent ${what}`);
    this.name = "Unreadable";
  }
}

function isEntry(e: unknown): e is FeedEntry {
  if (typeof e !== "object" || e === null || Array.isArray(e)) return false;
  const { seq, revocation_id: id, expires_at: expires } = e as Partial<Record<keyof FeedEntry, unknown>>;
  return typeof seq === "number" && Number.isSafeInteger(seq)
    && typeof id === "string" && id.length > 0 && id.length % 2 === 0 && /^[0-9a-fA-F]+$/.test(id)
    && isRfc3339(expires) && Number.isFinite(Date.parse(expires));
}

/** Every entry of `value` (one entry or a list), refusing all of them if one is not an entry. */
function entries(value: unknown, what: string): FeedEntry[] {
  const items: unknown[] = Array.isArray(value) ? value : [value];
  if (!items.every(isEntry)) throw new Unreadable(`${what} with an entry that is not one`);
  return items as FeedEntry[];
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
      let page: { items?: unknown; next_after?: unknown };
      try {
        page = (await response.json()) as { items?: unknown; next_after?: unknown };
      } catch {
        throw new Unreadable("a page that is not JSON");
      }
      if (typeof page !== "object" || page === null || !Array.isArray(page.items)
        || typeof page.next_after !== "number" || !Number.isSafeInteger(page.next_after)) {
        throw new Unreadable("a page without `items` and `next_after`");
      }
      const items = entries(page.items, "a page");
      read += items.length;
      this.apply(items);
      const next = page.next_after;
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
          // An unreadable event ends the stream here, before any later event moves the cursor:
          // the caller polls again from the last entry applied.
          const parsed = event.split("\n").filter((l) => l.startsWith("data:")).flatMap((l) => {
            let data: unknown;
            try {
              data = JSON.parse(l.slice(5).trim());
            } catch {
              throw new Unreadable("an event that is not JSON");
            }
            return entries(data, "an event");
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
