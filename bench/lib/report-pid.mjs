// Preload (node --import) for a child whose CPU time the driver samples from /proc while it runs:
// the process names its pid on stderr (`bench-pid <pid>`) before anything else.
process.stderr.write(`bench-pid ${process.pid}\n`);
