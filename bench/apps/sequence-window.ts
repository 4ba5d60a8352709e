// The cluster benchmark's grow-under-load app: exactly examples/validation/sequence-window.ts
// (input "<key> <n>", output "<key> <last four n>"), so examples/validation/check.ts can prove the
// output has no loss, duplication or reordering per key across a slot move. Re-exported rather
// than copied, so the checker and the app cannot drift apart.
export { default } from "../../examples/validation/sequence-window.ts";
