/** A promise with its settle functions, for the many "wait until this happens" points. */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(err: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A waiter that nobody awaits any more must not turn a later rejection into a process crash.
  promise.catch(() => {});
  return { promise, resolve, reject };
}
