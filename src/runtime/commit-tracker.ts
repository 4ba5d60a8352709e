/**
 * Commits a source's batches in order as they finish: a batch's records may finish on other
 * workers in any order, but a position is committed only once it and every earlier batch are done.
 */
export interface CommitTracker {
  /** A batch read after `progress`; done settles when all of it is done everywhere. */
  add(done: Promise<void>, progress: unknown): void;
  /** Resolves once fewer than `limit` batches are unfinished. */
  room(limit: number): Promise<void>;
  /** Resolves once every batch added so far is committed. */
  drained(): Promise<void>;
}

interface Entry {
  progress: unknown;
  finished: boolean;
}

export function createCommitTracker(commit: (progress: unknown) => void, fail: (err: unknown) => void): CommitTracker {
  const entries: Entry[] = [];
  let waiters: Array<{ limit: number; resolve: () => void }> = [];
  const advance = (): void => {
    let last: Entry | undefined;
    while (entries.length > 0 && entries[0]!.finished) last = entries.shift();
    if (last !== undefined) commit(last.progress);
    waiters = waiters.filter((w) => {
      if (entries.length >= w.limit) return true;
      w.resolve();
      return false;
    });
  };
  return {
    add(done, progress) {
      const entry: Entry = { progress, finished: false };
      entries.push(entry);
      done.then(
        () => {
          entry.finished = true;
          advance();
        },
        fail,
      );
    },
    room(limit) {
      if (entries.length < limit) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ limit, resolve }));
    },
    drained() {
      return this.room(1);
    },
  };
}
