// Per-user totals of JSON payments from RabbitMQ: one output per message, the user's running
// count and sum, e.g. {"user":"u17","count":5,"sum":12}. A message the app cannot decode is not
// dropped: it becomes a dead letter {"deadLetter":{"reason":...,"body":...}} on the same sink,
// which the example's sink connector publishes to a RabbitMQ dead-letter queue with its reason.
import { pipeline } from "keyway";

interface Payment {
  user: string;
  amount: number;
}

type Decoded = { ok: true; payment: Payment } | { ok: false; reason: string; body: string };

/** Dead letters all go to one key: they are rare, and one key keeps their order. */
const DEAD_LETTERS = "\u0000dead-letters";
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Never throws: whatever cannot be decoded is returned with the reason. */
export function decodePayment(bytes: Uint8Array): Decoded {
  const body = Buffer.from(bytes).toString("base64");
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return { ok: false, reason: "body is not UTF-8", body };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, reason: `body is not JSON: ${(err as Error).message}`, body };
  }
  const p = value as Partial<Payment> | null;
  if (typeof p !== "object" || p === null || typeof p.user !== "string" || p.user === "") {
    return { ok: false, reason: 'expected an object with a non-empty string "user"', body };
  }
  if (typeof p.amount !== "number" || !Number.isFinite(p.amount)) {
    return { ok: false, reason: 'expected a finite number "amount"', body };
  }
  return { ok: true, payment: { user: p.user, amount: p.amount } };
}

export default pipeline("user-totals")
  .source("payments", decodePayment)
  .keyBy((d) => (d.ok ? d.payment.user : DEAD_LETTERS))
  .state(
    () => ({ count: 0, sum: 0 }),
    (d, s) => {
      if (!d.ok) return { deadLetter: { reason: d.reason, body: d.body } };
      s.count += 1;
      s.sum += d.payment.amount;
      return { user: d.payment.user, count: s.count, sum: s.sum };
    },
  )
  .sink("totals");
