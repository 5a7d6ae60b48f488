/** Where library code reports what it does. Messages never hold secrets. The CLI writes them to stderr. */
export type Log = (level: 'debug' | 'info' | 'warn' | 'error', message: string) => void;

export const silentLog: Log = () => {};
