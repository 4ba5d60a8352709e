/**
 * Recent cluster and engine events (joins, slot moves, failovers, copies restored, checkpoints)
 * for the dashboard: a bounded ring beside the log lines that report them, with subscribers.
 *
 * One ring per process, like the log's stderr: the code that logs these events runs deep in the
 * coordinator and the engine, and threading a ring through their options would touch every
 * caller for no gain (a process runs one engine; the simulator's many workers only share a
 * ring nobody reads).
 */

export type EventKind = "join" | "leave" | "move" | "failover" | "copies" | "checkpoint" | "coordinator" | "error";

export interface KeywayEvent {
  /** Milliseconds since the epoch, of the latest occurrence. */
  atMs: number;
  kind: EventKind;
  text: string;
  /** Occurrences folded into this entry (checkpoints every second would push everything else out). */
  count: number;
}

export const EVENT_RING_SIZE = 100;

export interface EventRing {
  record(kind: EventKind, text: string, options?: { fold?: boolean }): void;
  /** Oldest first. */
  recent(): KeywayEvent[];
  subscribe(listener: (event: KeywayEvent) => void): () => void;
}

export function createEventRing(size = EVENT_RING_SIZE): EventRing {
  const ring: KeywayEvent[] = [];
  const listeners = new Set<(event: KeywayEvent) => void>();
  return {
    record(kind, text, options) {
      const last = ring.at(-1);
      let event: KeywayEvent;
      if (options?.fold === true && last?.kind === kind) {
        event = last;
        event.atMs = Date.now();
        event.text = text;
        event.count++;
      } else {
        event = { atMs: Date.now(), kind, text, count: 1 };
        ring.push(event);
        if (ring.length > size) ring.shift();
      }
      for (const listener of listeners) listener(event);
    },
    recent: () => ring.map((e) => ({ ...e })),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

export const events: EventRing = createEventRing();
