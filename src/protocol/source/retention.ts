/**
 * How long a connector source keeps a stream that no session has open and whose records are all
 * committed, before it retires it (R-SRC-RETIREMENT). Its own module, free of imports, so the CLI
 * can show the default without loading the protocol code.
 */
export const STREAM_RETENTION_MS_DEFAULT = 3_600_000;
