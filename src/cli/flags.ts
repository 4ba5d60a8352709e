/** The one parser for a command-line flag that takes a positive integer. */
import { ErrorCode, KeywayError } from "../errors.ts";

export function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n <= 0) throw new KeywayError(ErrorCode.USAGE, `${flag} expects a positive integer, got "${value}"`);
    return n;
  };
}
