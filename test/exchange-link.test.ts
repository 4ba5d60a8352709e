import { describe, expect, it } from "vitest";
import { createLinkReceiver, createLinkSender } from "../src/exchange/link-state.ts";

describe("exchange link state", () => {
  it("sends no more than the window of records and bytes not done, and one batch larger than the window alone", () => {
    const sender = createLinkSender<string>({ records: 100, bytes: 1000 });
    for (const name of ["a", "b", "c"]) sender.enqueue(name, 40, 10);
    expect(sender.takeSendable().map((b) => b.message)).toEqual(["a", "b"]);
    expect(sender.takeSendable()).toEqual([]);
    expect(sender.queuedRecords()).toBe(40);
    sender.ack(1n, 1n);
    expect(sender.takeSendable().map((b) => b.message)).toEqual(["c"]);
    sender.ack(3n, 3n);
    sender.enqueue("huge", 500, 10);
    sender.enqueue("next", 1, 10);
    expect(sender.takeSendable().map((b) => b.message)).toEqual(["huge"]);
    expect(sender.backlogRecords()).toBe(501);
  });

  it("bounds bytes as well as records", () => {
    const sender = createLinkSender<string>({ records: 1000, bytes: 100 });
    sender.enqueue("a", 1, 60);
    sender.enqueue("b", 1, 60);
    expect(sender.takeSendable().map((b) => b.message)).toEqual(["a"]);
  });

  it("settles a batch when the receiver reports it done, in order, and drains on applied", async () => {
    const sender = createLinkSender<string>();
    const settled: string[] = [];
    const batches = ["a", "b", "c"].map((m) => {
      const { done } = sender.enqueue(m, 1, 1);
      void done.then(() => settled.push(m));
      return m;
    });
    sender.takeSendable();
    let drained = false;
    void sender.whenApplied(sender.lastSeq()).then(() => (drained = true));
    sender.ack(3n, 1n);
    await Promise.resolve();
    await Promise.resolve();
    expect(drained).toBe(true);
    expect(settled).toEqual(["a"]);
    sender.ack(3n, 3n);
    await new Promise((r) => setImmediate(r));
    expect(settled).toEqual(batches);
  });

  it("after a reconnect sends again only what the receiver never applied, ahead of what was never sent", () => {
    const sender = createLinkSender<string>({ records: 2, bytes: 1000 });
    for (const m of ["a", "b", "c"]) sender.enqueue(m, 1, 1);
    expect(sender.takeSendable().map((b) => b.seq)).toEqual([1n, 2n]);
    sender.accepted(1n, { records: 10, bytes: 1000 });
    expect(sender.takeSendable().map((b) => [b.seq, b.message])).toEqual([
      [2n, "b"],
      [3n, "c"],
    ]);
  });

  it("rejects every batch not done when the receiver is gone, and releases drains", async () => {
    const sender = createLinkSender<string>();
    const { done } = sender.enqueue("a", 1, 1);
    sender.takeSendable();
    const drain = sender.whenApplied(1n);
    sender.fail(new Error("worker w1 left the cluster"));
    await expect(done).rejects.toThrow(/w1 left/);
    await expect(drain).resolves.toBeUndefined();
  });

  it("on the receiving end, takes the next sequence, drops a resend and refuses a gap; done advances over the finished prefix", () => {
    const receiver = createLinkReceiver();
    expect(receiver.classify(1n)).toBe("next");
    expect(receiver.classify(2n)).toBe("gap");
    for (const seq of [1n, 2n, 3n]) {
      receiver.markApplied(seq);
      receiver.track(seq, 10);
    }
    expect(receiver.classify(2n)).toBe("duplicate");
    expect(receiver.classify(4n)).toBe("next");
    receiver.markDone(2n);
    receiver.markDone(3n);
    expect(receiver.done).toBe(0n);
    expect(receiver.backlogRecords()).toBe(10);
    receiver.markDone(1n);
    expect(receiver.done).toBe(3n);
    expect(receiver.backlogRecords()).toBe(0);
  });
});
