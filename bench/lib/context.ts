/** What the orchestrator hands each benchmark. */
export interface BenchContext {
  /** The repository root; children run with it as their working directory. */
  root: string;
  /** Scratch space for generated inputs and outputs (gitignored). */
  dataDir: string;
  /** Small inputs and short runs, to check the harness itself; figures are not comparable. */
  quick: boolean;
  log(message: string): void;
}
