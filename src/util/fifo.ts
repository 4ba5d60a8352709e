/**
 * A first-in first-out queue with O(1) push, shift and indexed access: Array.shift is O(n), which
 * a buffer of 100k records cannot afford per record. It sets no bound of its own: each user bounds
 * what it enqueues (by credits granted, a window, one batch in flight) and says how.
 */

/** Consumed slots at the front are compacted away once they are this many and half the array. */
const COMPACT_AFTER_SLOTS = 1024;

export class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  /** Puts items back at the front, in the order given. */
  unshift(...items: T[]): void {
    this.items = [...items, ...this.items.slice(this.head)];
    this.head = 0;
  }

  /** The item `index` places from the front; index must be below length. */
  at(index: number): T {
    return this.items[this.head + index] as T;
  }

  peek(): T | undefined {
    return this.length === 0 ? undefined : this.at(0);
  }

  shift(): T | undefined {
    if (this.length === 0) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head >= COMPACT_AFTER_SLOTS && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Empties the queue, returning what it held, front first. */
  clear(): T[] {
    const rest = this.items.slice(this.head) as T[];
    this.items = [];
    this.head = 0;
    return rest;
  }
}
