/** One finding of `gatehouse check` (cli/lint.ts gathers them from every part's lint). */
export interface Warning {
  key: string;
  message: string;
  /**
   * 'error': as configured, no sign-in can work or Gatehouse will not start; `gatehouse check`
   * exits 2. Absent: a warning.
   */
  severity?: 'error';
}
