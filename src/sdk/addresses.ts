/**
 * The engine addresses a connector knows (protocol §13.4): the configured ones, then the
 * cluster_addresses of the latest Welcome. Every worker of a cluster serves the protocol, so when
 * the worker a connector is attached to becomes unreachable, the connector moves on to the next
 * address of this list, round-robin, trying every known worker before any one of them twice
 * (R-FAILOVER).
 */

import { parseHostPort } from "../util/host-port.ts";

/** HOST:PORT with a port a connector can dial (not 0). */
const dialable = (address: string): boolean => {
  const parsed = parseHostPort(address);
  return !("error" in parsed) && parsed.port >= 1;
};

/** The configured engine: one HOST:PORT, or several separated by commas (workers of one cluster). */
export function parseEngineAddresses(engine: string): string[] {
  const addresses = engine
    .split(",")
    .map((a) => a.trim())
    .filter((a) => a !== "");
  if (addresses.length === 0 || !addresses.every(dialable)) {
    throw new RangeError(`engine must be HOST:PORT, or several separated by commas (ports 1 to 65535), got "${engine}"`);
  }
  return addresses;
}

/**
 * What a Welcome's cluster_addresses leave known of the cluster. An empty list (from an engine
 * that does not fill it) teaches nothing, so the addresses learned before are kept; an entry that
 * is not HOST:PORT could not be dialled and is dropped.
 */
export function learnAddresses(before: readonly string[], clusterAddresses: readonly string[]): readonly string[] {
  const learned = clusterAddresses.filter(dialable);
  return learned.length === 0 ? before : learned;
}

/** The configured addresses, then the learned ones that are not among them. */
export function knownAddresses(configured: readonly string[], learned: readonly string[]): string[] {
  return [...new Set([...configured, ...learned])];
}

/** The address after `current`, round-robin; the first one when `current` is not known (a redirect's). */
export function nextAddress(known: readonly string[], current: string): string {
  return known[(known.indexOf(current) + 1) % known.length]!;
}
