/** Failure timeouts, apart from the coordinator so the CLI reads them without loading it. */

/**
 * A worker silent this long is declared dead (--failure-timeout-ms): four missed heartbeats, so a
 * GC pause or a busy event loop (a large slot import takes ~1 s per million keys) does not fence
 * a live worker, while a crash costs its slots two seconds of stalled records.
 */
export const FAILURE_TIMEOUT_MS_DEFAULT = 2000;
/**
 * With etcd the failure timeout is the lease's TTL, and a worker that cannot renew its lease for
 * that long stops: long enough to ride out a short etcd outage (a restart, a leader election).
 * A worker whose process is gone is still found at once, by a refused connection.
 */
export const ETCD_FAILURE_TIMEOUT_MS_DEFAULT = 10_000;
