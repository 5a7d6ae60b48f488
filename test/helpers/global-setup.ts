// Starts what the tests need that is not part of the code under test. The S3 server is started by
// s3-server.ts on first use (see there); this file only exists so that every worker shares it.
export { setup, teardown } from './s3-server.js';
