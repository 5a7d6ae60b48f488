/** syncguard's library API: everything the CLI uses, for programs that want to call it directly. */
export * from './api.js';
export { loadConfig, parseConfig, configPath, configJsonSchema, type LoadedConfig } from './config/load.js';
export type { Config, AccountConfig, StoreConfig, KeepPolicy } from './config/schema.js';
export { SyncguardError, isSyncguardError, type ErrorCode } from './errors.js';
export type { Log } from './log.js';
export type { Provider, RemoteEntry, Change, ProviderFeatures } from './providers/types.js';
export type { Store, ObjectInfo, PutOptions } from './store/types.js';
export { Repository, type SnapshotInfo } from './snapshot/repository.js';
export { takeSnapshot, type SnapshotResult, type SnapshotProgress } from './snapshot/take.js';
export { restore, type RestoreResult, type RestoreTarget } from './snapshot/restore.js';
export { diff, ls, listSnapshots, type DiffResult, type LsResult } from './snapshot/browse.js';
export { verify, type VerifyResult } from './snapshot/verify.js';
export type { ManifestEntry, ManifestHeader } from './snapshot/manifest.js';
