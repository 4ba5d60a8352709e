/** The etcd test helper: a private etcd serves the etcd3 client, keeps its data over a restart, and stops. */
import { Etcd3 } from "etcd3";
import { expect, test } from "vitest";
import { startEtcd } from "./helpers/etcd.ts";

test("a private etcd serves reads and writes, keeps its data over a restart, and stops", async () => {
  const etcd = await startEtcd("sanity");
  expect(etcd.endpoint).toMatch(/^127\.0\.0\.1:\d+$/);
  expect(etcd.uri).toBe(`etcd://${etcd.endpoint}`);
  const client = new Etcd3({ hosts: etcd.endpoint });
  try {
    await client.put("keyway/sanity").value("survives");
    expect(await client.get("keyway/sanity").string()).toBe("survives");

    await etcd.restart();
    // The same client reconnects to the restarted member.
    expect(await client.get("keyway/sanity").string()).toBe("survives");
  } finally {
    client.close();
    await etcd.stop();
  }
  // Stopped: nothing listens on its client port any more.
  await expect(fetch(`http://${etcd.endpoint}/health`)).rejects.toThrow();
});

test("says plainly why when etcd is not installed", async () => {
  const path = process.env.PATH;
  process.env.PATH = "/nonexistent";
  try {
    await expect(startEtcd("missing")).rejects.toThrow(/etcd is not installed.*bash scripts\/install-test-deps\.sh/);
  } finally {
    process.env.PATH = path;
  }
});
